"""The generalisation matrix (studies/matrix.py measures it) as a printed table and one heatmap per level."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipforensics.report.figures import plot_matrix

MATRIX_FIGURES = (("matrix_frame_auc.png", "frame_auc"), ("matrix_video_auc.png", "video_auc"))


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


def write_matrix_report(matrix: pd.DataFrame, out: Path) -> str:
    """The heatmaps of frame and video AUC in `out`; returns the printed table (the study prints it)."""
    for name, value in MATRIX_FIGURES:
        plot_matrix(matrix, out / name, value)
    return matrix_text(matrix)
