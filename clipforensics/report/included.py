"""Analyses made by other commands, folded into one report (`evaluate.py ... --include DIR`).

A layer sweep (`fit_heads.py --layer-sweep`, a run folder holding layer_sweep.json), a robustness
evaluation (`evaluate.py robustness`, a folder holding robustness.json) and a generalisation matrix
(`evaluate.py matrix`, a folder holding matrix.json and matrix.csv) each wrote their numbers once; the
report reads those files, never recomputes them, and puts each under its own key in metrics.json and as
a table and a figure in report.html, so one page holds every result of a study.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.io import read_json_object
from clipforensics.core.registry import Registry
from clipforensics.report.errors import safe_name
from clipforensics.report.layers import plot_sweep, sweep_report_table
from clipforensics.report.matrix import matrix_table, plot_included_matrix
from clipforensics.report.robustness import included_caption, included_table, plot_included_robustness
from clipforensics.report.tables import Table


@dataclass(frozen=True)
class Analysis:
    """One kind of folded-in analysis: the file that marks its folder, where its rows are, how it is drawn."""

    marker: str
    rows: str
    caption: str | Callable[[list[dict[str, Any]]], str]
    """The figure's caption, or what gives it from the rows (rows of an older format are drawn otherwise)."""
    table: Callable[[list[dict[str, Any]]], Table]
    figure: Callable[[list[dict[str, Any]], Path], Path]
    load: Callable[[Path, dict[str, Any]], Any] | None = None
    """Where the rows are when not (only) in the marker JSON under `rows` (the matrix's are in matrix.csv; a
    robustness report's test groups are under `robustness_groups`)."""
    title: str = ""

    def read_rows(self, folder: Path, record: dict[str, Any]) -> Any:
        return self.load(folder, record) if self.load else record.get(self.rows)

    def caption_of(self, rows: list[dict[str, Any]]) -> str:
        return self.caption(rows) if callable(self.caption) else self.caption


def _matrix_rows(folder: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """matrix.csv as records (the cells and their intervals; matrix.json holds the settings)."""
    path = folder / "matrix.csv"
    if not path.is_file():
        raise UserError(f"--include {folder}: matrix.json without matrix.csv (an unfinished matrix run?)")
    table = pd.read_csv(path)
    return table.astype(object).where(table.notna(), None).to_dict("records")


def _robustness_rows(folder: Path, record: dict[str, Any]) -> Any:
    """The rows over every test video, then the test groups' rows (in-domain, unseen, each manipulation), which a
    robustness report written before groups existed does not hold."""
    rows, groups = record.get("robustness"), record.get("robustness_groups") or []
    return rows + groups if isinstance(rows, list) and isinstance(groups, list) else rows


ANALYSES: Registry[Analysis] = Registry("analysis")
ANALYSES.register("layer_sweep", Analysis(
    "layer_sweep.json", "rows", "video AUC per stored layer (val picks, test beside it)",
    sweep_report_table, lambda rows, png: plot_sweep(rows, png, svg=True), title="Layer sweep"))
ANALYSES.register("robustness", Analysis(
    "robustness.json", "robustness", included_caption, included_table, plot_included_robustness,
    load=_robustness_rows, title="Robustness"))
ANALYSES.register("matrix", Analysis(
    "matrix.json", "matrix.csv", "video AUC, trained on rows, tested on columns (diverging scale, 0.5 = chance)",
    matrix_table, plot_included_matrix, load=_matrix_rows, title="Generalisation matrix"))

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
    rows: list[dict[str, Any]]

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
            raise UserError(f"--include {folder}: not a folder holding {markers} (a fit_heads.py --layer-sweep run, "
                            "an evaluate.py robustness report or an evaluate.py matrix folder)")
        analysis = ANALYSES.get(kind)
        record = read_json_object(folder / analysis.marker, f"--include takes the {kind} as its command wrote it")
        rows = analysis.read_rows(folder, record)
        if not isinstance(rows, list) or not rows:
            raise UserError(f"--include {folder}: {analysis.marker} holds no rows")
        item = Included(kind, folder, record, rows)
        try:
            ANALYSES.get(kind).table(rows)  # drawn again in the report; here so a bad file is refused before it
        except UNREADABLE_ROWS as exc:
            raise _rows_error(item, exc) from None
        found.append(item)
    figures = [item.figure for item in found]
    if len(set(figures)) < len(figures):
        raise UserError("--include: two folders of the same kind share a name; give folders with distinct names")
    return found


@dataclass(frozen=True)
class Folded:
    """One analysis as drawn for the report: its kind, section title, table (note says where it came from),
    figure."""

    kind: str
    title: str
    table: Table
    caption: str
    figure: Path


def fold_in(included: list[Included], metrics: dict[str, Any], out: Path) -> list[Folded]:
    """Each analysis into `metrics` (key = its kind, then its folder; rows read from a file other than the marker
    added under that file's name) and as a table and a figure drawn in `out`."""
    folded = []
    for item in included:
        analysis = ANALYSES.get(item.kind)
        metrics.setdefault(item.kind, {})[str(item.folder)] = (
            item.record if analysis.rows in item.record else {**item.record, analysis.rows: item.rows})
        try:
            table, png = analysis.table(item.rows), analysis.figure(item.rows, out / item.figure)
        except UNREADABLE_ROWS as exc:
            raise _rows_error(item, exc) from None
        folded.append(Folded(item.kind, f"{analysis.title}: {item.folder.name}",
                             dataclasses.replace(table, note=f"From {item.folder}. {table.note}".strip()),
                             f"{analysis.caption_of(item.rows)}: {item.folder}", png))
    return folded
