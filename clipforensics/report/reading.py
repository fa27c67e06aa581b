"""A few lines that read a report's table for the user: in-domain against unseen manipulations, with intervals.

    python -m clipforensics.report.reading reports/NAME/metrics.json [--runs logreg,NAME-lora]

Everything is computed from metrics.json: which manipulations a run trained on comes from the protocol
recorded with its scores, what its backbone was tuned on from the cache record in the provenance (a LoRA
cache) or from the scorer itself (a LoRA run), the numbers and their 95% intervals from the evaluator. A
manipulation the backbone was tuned on is never called unseen, whatever the head trained on. A verdict says
only what the interval supports: above chance when the whole interval is above 0.5, and a drop only when
the in-domain interval lies entirely above the unseen one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from clipforensics.core.errors import UserError, cli_entry
from clipforensics.data.provenance import BACKBONE_SEEN, IN_DOMAIN, UNSEEN, TunedTower, test_kind

CHANCE = 0.5


def _cell(metrics: dict[str, Any], level: str) -> tuple[float, float | None, float | None]:
    block = metrics[level]
    lo, hi = block.get("auc_ci") or (None, None)
    return float(block["auc"]), lo, hi


def chance_verdict(lo: float | None, hi: float | None) -> str:
    """What the interval says about chance (0.5)."""
    if lo is None or hi is None:
        return "no interval (bootstrap off)"
    if lo > CHANCE:
        return "above chance"
    if hi < CHANCE:
        return "below chance"
    return "not distinguishable from chance"


def _fmt(auc: float, lo: float | None, hi: float | None) -> str:
    return f"{auc:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else f"{auc:.2f}"


def _per_manipulation(run: dict[str, Any]) -> dict[str, Any]:
    """Per test manipulation metrics; a run tested on one manipulation has them in its overall block."""
    per = run.get("per_manipulation") or {}
    if per:
        return per
    tested = (run.get("source", {}).get("protocol") or {}).get("test_fakes") or []
    return {tested[0]: run["test"]} if len(tested) == 1 else {}



def _trained(run: dict[str, Any]) -> list[str]:
    return list((run.get("source", {}).get("protocol") or {}).get("train_fakes") or [])


def run_tower(name: str, run: dict[str, Any], caches: dict[str, dict[str, Any]]) -> TunedTower | None:
    """What the tower behind one result was tuned on, as its test data set sees it: a LoRA scorer's own training,
    else its cache's record (None: a base backbone). A result on another data set (`run@other`) is on the tuned
    data set only where the run's own cache was not (then it may be)."""
    source = run.get("source") or {}
    if source.get("scorer") == "lora":
        tower = TunedTower(tuple(_trained(run)), str(source.get("name") or name))
    else:
        tower = TunedTower.from_record((caches.get(str(source.get("cache"))) or {}).get("tuned_on"))
    if tower is None or not on_other_data_set(name, run):
        return tower
    return TunedTower(tower.manipulations, tower.run, False if tower.here else None)


def on_other_data_set(name: str, run: dict[str, Any]) -> bool:
    """Whether a result is a run's test on another data set (`run@other`, named in its test sets)."""
    others = {str(t.get("name")) for t in (run.get("source") or {}).get("test_sets") or ()}
    return "@" in name and name.rsplit("@", 1)[1] in others


def beyond_training(tower: TunedTower | None, trained: list[str]) -> bool:
    """Whether the tower may have seen more of this data set than the head trained on (a LoRA scorer's own
    tuning, or a head fitted on what the tower was tuned on, is not)."""
    return tower is not None and not (tower.here is True and set(tower.manipulations) <= set(trained))


def run_towers(metrics: dict[str, Any]) -> dict[str, TunedTower]:
    """Result name -> its tuned tower, for every result whose backbone may have seen more than its head trained on
    (the reading and the results table say so)."""
    caches = {str(c.get("path")): c for c in (metrics.get("provenance") or {}).get("caches") or ()}
    runs = metrics.get("runs") or {}
    towers = {name: run_tower(name, run, caches) for name, run in runs.items()}
    return {name: tower for name, tower in towers.items()
            if beyond_training(tower, [] if on_other_data_set(name, runs[name]) else _trained(runs[name]))}


def result_cells(name: str, run: dict[str, Any], level: str = "video", tower: TunedTower | None = None
                 ) -> dict[str, tuple[str, tuple[float, float | None, float | None]]]:
    """Test manipulation -> (in-domain / backbone-seen / unseen, (AUC, low, high)) of one result: the one rule
    the reading and the report's summary table both use ({} without a recorded training manipulation)."""
    trained = _trained(run)
    per = _per_manipulation(run)
    if not trained or not per:
        return {}
    mine = [] if on_other_data_set(name, run) else trained
    return {m: (test_kind(m, mine, tower), _cell(metrics, level)) for m, metrics in per.items()}


def _header(name: str, trained: list[str], tower: TunedTower | None, elsewhere: bool) -> str:
    """The run and what it trained on; what its backbone was tuned on where that is more than the run's own."""
    more = beyond_training(tower, [] if elsewhere else trained)
    where = " of another data set" if elsewhere else ""
    return f"{name} (trained on {', '.join(trained)}{where}{'; ' + tower.describe() if more else ''}):"


def read_run(name: str, run: dict[str, Any], level: str = "video", tower: TunedTower | None = None) -> list[str]:
    """Lines for one run: each in-domain, backbone-seen and unseen manipulation with its verdict, then the drop
    (in-domain against unseen only)."""
    found = result_cells(name, run, level, tower)
    if not found:
        return [f"{name}: no per-manipulation results with a recorded training manipulation to read"]
    trained, elsewhere = _trained(run), on_other_data_set(name, run)
    cells = {m: cell for m, (_, cell) in found.items()}
    kinds = {m: kind for m, (kind, _) in found.items()}
    width = max(len(f"{max(kind, 'in-domain', key=len)} {m}") for m, kind in kinds.items())
    lines = [_header(name, trained, tower, elsewhere)]
    for kind in (IN_DOMAIN, BACKBONE_SEEN, UNSEEN):
        for m in (m for m in cells if kinds[m] == kind):
            auc, lo, hi = cells[m]
            lines.append(f"  {f'{kind} {m}':<{width}}  {_fmt(auc, lo, hi):<18}  {chance_verdict(lo, hi)}")
    seen = [m for m in cells if kinds[m] == IN_DOMAIN]
    unseen = [m for m in cells if kinds[m] == UNSEEN]
    if seen and unseen:
        lines.append("  " + drop_sentence(cells, seen, unseen))
    if any(kind == BACKBONE_SEEN for kind in kinds.values()):
        lines.append(f"  {BACKBONE_SEEN}: {tower.describe()}, so those cells are not unseen manipulations")
    return lines


def drop_sentence(cells: dict[str, tuple[float, float | None, float | None]], seen: list[str],
                  unseen: list[str]) -> str:
    """In-domain mean against unseen mean, and for how many unseen manipulations the intervals separate."""
    mean = lambda names: sum(cells[m][0] for m in names) / len(names)  # noqa: E731
    inside, outside = mean(seen), mean(unseen)
    lowest_seen = min((cells[m][1] for m in seen if cells[m][1] is not None), default=None)
    separated = [m for m in unseen if lowest_seen is not None and cells[m][2] is not None
                 and cells[m][2] < lowest_seen]
    change = f"{inside:.2f} in-domain -> {outside:.2f} unseen ({outside - inside:+.2f})"
    if lowest_seen is None:
        return f"{change}; no intervals to compare"
    if len(separated) == len(unseen):
        return f"{change}: the in-domain interval lies above every unseen interval, so the drop is real"
    if separated:
        rest = [m for m in unseen if m not in separated]
        return (f"{change}: the intervals show the drop for {', '.join(separated)}; for {', '.join(rest)} they "
                "overlap (more test videos would tell)")
    return f"{change}: the intervals overlap, so this many test videos cannot show a drop"


def reading(metrics: dict[str, Any], runs: Sequence[str] = (), level: str = "video") -> list[str]:
    """The reading of every named run (all runs when none are named)."""
    available = metrics.get("runs") or {}
    names = list(runs) or list(available)
    missing = [n for n in names if n not in available]
    if missing:
        raise UserError(f"no run(s) {', '.join(missing)} in the metrics; available: {', '.join(available)}")
    towers = run_towers(metrics)
    lines = [f"Reading the table ({level} AUC, 95% bootstrap interval over videos; chance = {CHANCE}):"]
    for name in names:
        lines += read_run(name, available[name], level, towers.get(name))
    return lines


def short_line(name: str, run: dict[str, Any], level: str = "video", tower: TunedTower | None = None) -> str:
    """One line for one result, for the top of the report: in-domain against unseen and what the intervals
    say; the overall AUC and its chance verdict where there is no such split."""
    found = result_cells(name, run, level, tower)
    cells = {m: cell for m, (_, cell) in found.items()}
    seen = [m for m, (kind, _) in found.items() if kind == IN_DOMAIN]
    unseen = [m for m, (kind, _) in found.items() if kind == UNSEEN]
    if seen and unseen:
        skipped = sum(kind == BACKBONE_SEEN for kind, _ in found.values())
        note = f" ({skipped} backbone-seen left out)" if skipped else ""
        return f"{name}: {drop_sentence(cells, seen, unseen)}{note}"
    auc, lo, hi = _cell(run["test"], level)
    return f"{name}: {_fmt(auc, lo, hi)} over all test fakes, {chance_verdict(lo, hi)} (no in-domain/unseen split)"


def short_reading(metrics: dict[str, Any], level: str = "video") -> list[str]:
    """One line per result (the full reading, per manipulation, is `reading`)."""
    towers = run_towers(metrics)
    return [short_line(name, run, level, towers.get(name)) for name, run in (metrics.get("runs") or {}).items()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clipforensics.report.reading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="metrics.json written by evaluate.py")
    parser.add_argument("--runs", default="", help="comma list of run names to read (default: all)")
    parser.add_argument("--level", choices=("video", "frame"), default="video", help="AUC level (default: video)")
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.metrics)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"metrics file {path} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    print("\n".join(reading(metrics, runs, args.level)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
