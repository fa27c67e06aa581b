"""A few lines that read a report's table for the user: in-domain against unseen manipulations, with intervals.

    python -m clipforensics.report.reading reports/NAME/metrics.json [--runs logreg,NAME-lora]

Everything is computed from metrics.json: which manipulations a run trained on comes from the protocol
recorded with its scores, the numbers and their 95% intervals from the evaluator. A verdict says only
what the interval supports: above chance when the whole interval is above 0.5, and a drop only when
the in-domain interval lies entirely above the unseen one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from clipforensics.core.errors import UserError, cli_entry

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


def read_run(name: str, run: dict[str, Any], level: str = "video") -> list[str]:
    """Lines for one run: each in-domain and unseen manipulation with its verdict, then the drop."""
    trained = list((run.get("source", {}).get("protocol") or {}).get("train_fakes") or [])
    per = _per_manipulation(run)
    if not trained or not per:
        return [f"{name}: no per-manipulation results with a recorded training manipulation to read"]
    cells = {m: _cell(metrics, level) for m, metrics in per.items()}
    seen = [m for m in cells if m in trained]
    unseen = [m for m in cells if m not in trained]
    width = max(len(f"in-domain {m}") for m in cells)
    lines = [f"{name} (trained on {', '.join(trained)}):"]
    for kind, names in (("in-domain", seen), ("unseen", unseen)):
        for m in names:
            auc, lo, hi = cells[m]
            lines.append(f"  {f'{kind} {m}':<{width}}  {_fmt(auc, lo, hi):<18}  {chance_verdict(lo, hi)}")
    if seen and unseen:
        lines.append("  " + drop_sentence(cells, seen, unseen))
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
    lines = [f"Reading the table ({level} AUC, 95% bootstrap interval over videos; chance = {CHANCE}):"]
    for name in names:
        lines += read_run(name, available[name], level)
    return lines


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
