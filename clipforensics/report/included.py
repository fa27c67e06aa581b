"""Analyses made by other commands, folded into one report (`evaluate.py ... --include DIR`).

A layer sweep (`fit_heads.py --layer-sweep`, a run folder holding layer_sweep.json) and a robustness
evaluation (`evaluate.py robustness`, a folder holding robustness.json) each wrote their numbers once; the
report reads those JSON files, never recomputes them, and puts each under its own key in metrics.json and as
a table and a figure in report.html, so one page holds every result of a study.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clipforensics.core.errors import UserError
from clipforensics.core.io import read_json_object
from clipforensics.core.registry import Registry
from clipforensics.report.errors import safe_name
from clipforensics.report.layers import plot_sweep, sweep_report_table
from clipforensics.report.robustness import plot_robustness, robustness_table
from clipforensics.report.tables import Table


@dataclass(frozen=True)
class Analysis:
    """One kind of folded-in analysis: the file that marks its folder, where its rows are, how it is drawn."""

    marker: str
    rows: str
    caption: str
    table: Callable[[list[dict[str, Any]]], Table]
    figure: Callable[[list[dict[str, Any]], Path], Path]


ANALYSES: Registry[Analysis] = Registry("analysis")
ANALYSES.register("layer_sweep", Analysis(
    "layer_sweep.json", "rows", "video AUC per stored layer (val picks, test beside it)",
    sweep_report_table, plot_sweep))
ANALYSES.register("robustness", Analysis(
    "robustness.json", "robustness", "AUC vs perturbation severity, per perturbation kind (95% CI)",
    robustness_table, plot_robustness))

UNREADABLE_ROWS = (KeyError, TypeError, ValueError, AttributeError, IndexError)
"""What a row of the wrong shape raises while its table or figure is drawn (a damaged or foreign JSON)."""


def _rows_error(item: "Included", exc: Exception) -> UserError:
    path = item.folder / ANALYSES.get(item.kind).marker
    return UserError(f"--include {item.folder}: {path.name} holds rows of another shape "
                     f"({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class Included:
    """An analysis folder as read: its kind, its recorded JSON and the figure it gets in the report folder."""

    kind: str
    folder: Path
    record: dict[str, Any]

    @property
    def figure(self) -> str:
        return f"{self.kind}_{safe_name(self.folder.resolve().name)}.png"


def read_included(folders: tuple[str, ...] | list[str]) -> list[Included]:
    """Each --include folder, recognised by its marker file and read; anything else is refused by name."""
    found: list[Included] = []
    for text in folders:
        folder = Path(text)
        kind = next((name for name in ANALYSES.names() if (folder / ANALYSES.get(name).marker).is_file()), None)
        if kind is None:
            markers = " or ".join(ANALYSES.get(name).marker for name in ANALYSES.names())
            raise UserError(f"--include {folder}: not a folder holding {markers} (a fit_heads.py --layer-sweep run "
                            "or an evaluate.py robustness report)")
        analysis = ANALYSES.get(kind)
        record = read_json_object(folder / analysis.marker, f"--include takes the {kind} as its command wrote it")
        rows = record.get(analysis.rows)
        if not isinstance(rows, list) or not rows:
            raise UserError(f"--include {folder}: {analysis.marker} holds no rows")
        item = Included(kind, folder, record)
        try:
            ANALYSES.get(kind).table(rows)  # drawn again in the report; here so a bad file is refused before it
        except UNREADABLE_ROWS as exc:
            raise _rows_error(item, exc) from None
        found.append(item)
    figures = [item.figure for item in found]
    if len(set(figures)) < len(figures):
        raise UserError("--include: two folders of the same kind share a name; give folders with distinct names")
    return found


def fold_in(included: list[Included], metrics: dict[str, Any], out: Path) -> tuple[list[Table], list[tuple[str, Path]]]:
    """Each analysis into `metrics` (key = its kind, then its folder) and as a table and a figure drawn in `out`."""
    tables, images = [], []
    for item in included:
        analysis = ANALYSES.get(item.kind)
        metrics.setdefault(item.kind, {})[str(item.folder)] = item.record
        rows = item.record[analysis.rows]
        try:
            table, png = analysis.table(rows), analysis.figure(rows, out / item.figure)
        except UNREADABLE_ROWS as exc:
            raise _rows_error(item, exc) from None
        tables.append(dataclasses.replace(table, note=f"From {item.folder}. {table.note}".strip()))
        images.append((f"{analysis.caption}: {item.folder}", png))
    return tables, images
