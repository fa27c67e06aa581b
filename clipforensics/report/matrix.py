"""The generalisation matrix (studies/matrix.py measures it) as a printed table and one heatmap per level, and
its Cross-AUC (reals of one data set against fakes of another) as one small table per training row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipforensics.report.figures import plot_matrix
from clipforensics.report.tables import Row, Table, one_line

MATRIX_FIGURES = (("matrix_frame_auc.png", "frame_auc"), ("matrix_video_auc.png", "video_auc"))
POOLED = "all"
"""The `reals` and `fakes` of the Cross-AUC row that pools every test set of a row (studies/matrix.py)."""


def matrix_text(matrix: pd.DataFrame, value: str = "frame_auc") -> str:
    """The printed table: train rows x test columns; in-domain cells in [brackets], cells whose backbone saw
    another manipulation marked *."""
    notes = matrix.get("backbone", pd.Series("", index=matrix.index)).fillna("")
    inside = matrix.get("in_domain", pd.Series(False, index=matrix.index)).fillna(False).astype(bool)
    cells = [(f"[{v:.3f}]" if own else f"{v:.3f}") + (" *" if note else "")
             for v, note, own in zip(matrix[value], notes, inside)]
    rows = list(dict.fromkeys(matrix["train"]))
    columns = list(dict.fromkeys(matrix["test"]))
    table = matrix.assign(cell=cells).pivot(index="train", columns="test", values="cell")
    table = table.reindex(index=rows, columns=columns).fillna("").to_string()
    footnotes = ["[ ] in-domain: trained on the same data set and manipulation"] if inside.any() else []
    footnotes += [f"* {note}: the LoRA run behind this cache trained its backbone on it, so these cells do not "
                  "measure an unseen manipulation" for note in sorted(set(notes) - {""})]
    return "\n".join([table, *footnotes])


def _with_interval(cell: pd.Series, value: str) -> str:
    """'0.812 [0.70, 0.91]', or the point alone when no bootstrap ran."""
    lo, hi = cell.get(f"{value}_lo"), cell.get(f"{value}_hi")
    interval = f" [{float(lo):.2f}, {float(hi):.2f}]" if pd.notna(lo) and pd.notna(hi) else ""
    return f"{float(cell[value]):.3f}{interval}"


def cross_auc_text(cross: pd.DataFrame, value: str = "video_auc") -> str:
    """Per training row: reals of each data set (rows) against fakes of each (columns), with 95% intervals,
    then the AUC over all its test sets pooled; '' when no row was tested on several data sets."""
    if cross.empty:
        return ""
    blocks = [f"Cross-AUC ({value.replace('_', ' ')}, 95% bootstrap interval over videos): reals of the row's "
              "data set against fakes of the column's"]
    for train, part in cross.groupby("train", sort=False):
        pairs = part[part["reals"] != POOLED]
        table = pairs.assign(cell=[_with_interval(c, value) for _, c in pairs.iterrows()]).pivot(
            index="reals", columns="fakes", values="cell")
        order = list(dict.fromkeys(pairs["reals"]))
        table = table.reindex(index=order, columns=list(dict.fromkeys(pairs["fakes"]))).fillna("")
        pooled = part[part["reals"] == POOLED]
        lines = [f"trained on {train}:", table.rename_axis(index="reals \\ fakes", columns=None).to_string()]
        lines += [f"pooled over all test sets: {_with_interval(c, value)}" for _, c in pooled.iterrows()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


IN_DOMAIN_MARK = " ◆"
"""Marks an in-domain cell of the matrix table (trained and tested on the same manipulation and data set)."""
SEEN_MARK = " †"


def matrix_table(rows: list[dict], value: str = "video_auc") -> Table:
    """Training rows x test columns, each cell with its 95% interval; in-domain cells marked ◆, cells whose
    backbone was tuned on the test manipulation marked † (rows: matrix.csv as records)."""
    matrix = pd.DataFrame(rows)
    inside = matrix.get("in_domain", pd.Series(False, index=matrix.index)).fillna(False).astype(bool)
    notes = matrix.get("backbone", pd.Series("", index=matrix.index)).fillna("").astype(str)
    cells = [_with_interval(c, value) + (IN_DOMAIN_MARK if own else "") + (SEEN_MARK if note else "")
             for (_, c), own, note in zip(matrix.iterrows(), inside, notes)]
    train, test = list(dict.fromkeys(matrix["train"].astype(str))), list(dict.fromkeys(matrix["test"].astype(str)))
    grid = matrix.assign(cell=cells, train=matrix["train"].astype(str), test=matrix["test"].astype(str)).pivot(
        index="train", columns="test", values="cell").reindex(index=train, columns=test).fillna("")
    body = tuple(Row((one_line(name), *grid.loc[name].tolist())) for name in train)
    pretty = value.replace("_", " ").replace("auc", "AUC")
    return Table(columns=("trained on \\ tested on", *test), right=(False,) + (True,) * len(test), rows=body,
                 note=f"{pretty} [95% bootstrap interval over videos]; 0.5 is chance.{IN_DOMAIN_MARK}: in-domain "
                      f"(same manipulation and data set).{SEEN_MARK}: the backbone was tuned on the test "
                      "manipulation, so the cell is not an unseen one.")


def plot_included_matrix(rows: list[dict], out_png: Path) -> Path:
    """The video-AUC heatmap of an included matrix (PNG and SVG) for the report."""
    return plot_matrix(pd.DataFrame(rows), out_png, "video_auc", svg=True)


def write_matrix_report(matrix: pd.DataFrame, out: Path, cross: pd.DataFrame | None = None) -> str:
    """The heatmaps of frame and video AUC in `out`; returns the printed tables (the study prints them)."""
    for name, value in MATRIX_FIGURES:
        plot_matrix(matrix, out / name, value)
    crossed = cross_auc_text(cross) if cross is not None else ""
    return "\n\n".join(part for part in (matrix_text(matrix), crossed) if part)
