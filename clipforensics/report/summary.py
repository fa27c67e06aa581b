"""The report's first table, the tool's question answered per run: in-domain AUC, each unseen manipulation and
each other data set, mean unseen and the drop, with 95% intervals.

Computed from metrics.json alone, with the reading's own rule (report/reading.py `result_cells`) for what is
in-domain, backbone-seen or unseen: a manipulation the backbone was tuned on is shown, marked, and never counted
as unseen. A run tested on other data sets (`run@other` results) is one row, each other data set one column
(its AUC over all its test fakes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clipforensics.data.provenance import BACKBONE_SEEN, IN_DOMAIN, UNSEEN, TunedTower
from clipforensics.report.reading import on_other_data_set, result_cells, run_towers
from clipforensics.report.tables import Row, Table, ci_cell, one_line

Cell = tuple[float, "float | None", "float | None"]
SEEN_MARK = " †"
"""Marks a backbone-seen cell (the note under the table says what it means)."""


@dataclass
class SummaryRow:
    """One run: its in-domain cells, and per unseen (or backbone-seen) column its kind and cell."""

    run: str
    in_domain: dict[str, Cell] = field(default_factory=dict)
    others: dict[str, tuple[str, Cell]] = field(default_factory=dict)

    def in_domain_auc(self) -> Cell | None:
        """The in-domain cell; with several trained manipulations their mean, without an interval."""
        if not self.in_domain:
            return None
        if len(self.in_domain) == 1:
            return next(iter(self.in_domain.values()))
        return sum(c[0] for c in self.in_domain.values()) / len(self.in_domain), None, None

    def mean_unseen(self) -> float | None:
        unseen = [cell[0] for kind, cell in self.others.values() if kind == UNSEEN]
        return sum(unseen) / len(unseen) if unseen else None

    def drop(self) -> float | None:
        inside, outside = self.in_domain_auc(), self.mean_unseen()
        return None if inside is None or outside is None else outside - inside[0]

    def record(self) -> dict[str, Any]:
        """The row for metrics.json (added under `summary`)."""
        inside = self.in_domain_auc()
        return {"run": self.run, "in_domain": sorted(self.in_domain),
                "in_domain_auc": None if inside is None else inside[0],
                "in_domain_ci": None if inside is None or inside[1] is None else [inside[1], inside[2]],
                "tests": {k: {"kind": kind, "auc": c[0], "ci": None if c[1] is None else [c[1], c[2]]}
                          for k, (kind, c) in self.others.items()},
                "mean_unseen": self.mean_unseen(), "drop": self.drop()}


def _group(name: str, run: dict[str, Any]) -> str:
    """The row a result belongs to: `run@dataset` results of one run share the run's name."""
    tested_elsewhere = bool((run.get("source") or {}).get("test_sets"))
    return name.rsplit("@", 1)[0] if tested_elsewhere and "@" in name else name


def _add_result(row: SummaryRow, name: str, run: dict[str, Any], level: str, tower: TunedTower | None) -> None:
    if on_other_data_set(name, run):
        block = run["test"][level]
        lo, hi = block.get("auc_ci") or (None, None)
        saw = tower is not None and any(tower.saw(m) for m in run.get("per_manipulation") or {})
        row.others[name.rsplit("@", 1)[1] + " (data set)"] = (BACKBONE_SEEN if saw else UNSEEN,
                                                              (float(block["auc"]), lo, hi))
        return
    for manipulation, (kind, cell) in result_cells(name, run, level, tower).items():
        if kind == IN_DOMAIN:
            row.in_domain[manipulation] = cell
        else:
            row.others[manipulation] = (kind, cell)


def summary_rows(metrics: dict[str, Any], level: str = "video") -> list[SummaryRow]:
    """One row per run (its results on other data sets folded in), in the report's run order."""
    towers = run_towers(metrics)
    rows: dict[str, SummaryRow] = {}
    for name, run in (metrics.get("runs") or {}).items():
        group = _group(name, run)
        _add_result(rows.setdefault(group, SummaryRow(group)), name, run, level, towers.get(name))
    return list(rows.values())


def _fmt(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    return ci_cell(f"{cell[0]:.3f}", None if cell[1] is None else (cell[1], cell[2]))


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def summary_table(rows: list[SummaryRow], level: str = "video") -> Table:
    """Runs x (in-domain, each unseen column, mean unseen, drop); backbone-seen cells marked and left out of
    the mean."""
    columns = list(dict.fromkeys(k for r in rows for k in r.others))
    body = []
    for r in rows:
        inside = r.in_domain_auc()
        trained = ", ".join(r.in_domain) or "–"
        cells = [_fmt(r.others[c][1]) + (SEEN_MARK if r.others[c][0] == BACKBONE_SEEN else "")
                 if c in r.others else "" for c in columns]
        body.append(Row((one_line(r.run), trained, _fmt(inside), *cells,
                         "–" if r.mean_unseen() is None else f"{r.mean_unseen():.3f}", _signed(r.drop()))))
    header = ("run", "trained on", f"in-domain {level} AUC", *columns, "mean unseen", "drop")
    return Table(columns=header, right=(False, False) + (True,) * (len(header) - 2), rows=tuple(body),
                 note=f"{level.capitalize()}-level AUC [95% bootstrap interval over videos]; each test column is all "
                      "reals against that manipulation's fakes (a data set: all its fakes). Mean unseen averages the "
                      f"unseen columns; drop = mean unseen − in-domain (negative: worse on unseen).{SEEN_MARK}: the "
                      "backbone was tuned on this manipulation, so it is not unseen and not in the mean.")
