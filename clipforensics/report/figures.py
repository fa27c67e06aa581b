"""Figures: ROC curves, confusion matrices, the train x test matrix heatmap.

They only draw what the evaluator measured (ROC points, AUC and EER come from `measure.curve`), so a
figure cannot disagree with the table. Figures are drawn on bare `Figure` objects with the Agg
canvas, never through pyplot, so no global figure registry grows and no display is needed; each
PNG lands at its final path through `atomic_path`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from clipforensics.core.errors import UserError
from clipforensics.core.io import atomic_path
from clipforensics.data.scores import check_scores_table
from clipforensics.measure import curve, metrics
from clipforensics.measure.result import RunResult
from clipforensics.report.tables import DECISION_LEVELS

DPI = 110


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, outside pyplot, so it is freed as soon as it goes out of scope."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_png: Path, svg: bool = False) -> Path:
    """The PNG at `out_png`, and with `svg` the same figure as vector graphics beside it (same stem, .svg)."""
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    if svg:
        with atomic_path(out_png.with_suffix(".svg"), suffix=".svg") as tmp:
            fig.savefig(tmp, format="svg", bbox_inches="tight")
    fig.clear()
    return out_png


# ---------------------------------------------------------------------------- ROC

def _level_table(run: RunResult, level: str, video_agg: str) -> pd.DataFrame:
    check_scores_table(run.scores, f"ROC of {run.name}")
    if level == "frame":
        return run.scores
    return metrics.video_scores(run.scores, video_agg)


def plot_roc(runs: list[RunResult], out_png: Path, level: str = "frame", video_agg: str = "mean",
             svg: bool = False) -> Path:
    """Overlaid ROC curves, AUC and EER in the legend (beside the axes, never over the curves), EER points
    marked, to compare scorers directly."""
    if not runs:
        raise UserError("ROC plot: no runs")
    if level not in DECISION_LEVELS:
        raise UserError(f"ROC level must be 'frame' or 'video', got {level!r}")
    fig = new_figure(6.2, 5.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for run in runs:
        table = _level_table(run, level, video_agg)
        y = table["label"].to_numpy(dtype=float)
        s = table["score"].to_numpy(dtype=float)
        auc = curve.roc_auc(y, s)
        rate, _ = curve.eer(y, s)
        fpr, tpr = curve.roc_curve(y, s)
        (line,) = ax.plot(fpr, tpr, linewidth=1.8, label=f"{run.name} (AUC {auc:.3f}, EER {rate:.3f})")
        ax.plot([rate], [1 - rate], marker="o", markersize=7, color=line.get_color(), markeredgecolor="black")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black"))
    labels.append("EER point")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    what = "frames" if level == "frame" else f"videos, {video_agg} of frame scores"
    ax.set_title(f"ROC on the test split ({what})")
    ax.set_xlabel("false positive rate (real flagged as fake)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    return save_figure(fig, out_png, svg)


# ---------------------------------------------------------------------------- confusion

def _confusion_panel(ax: Axes, counts: dict, title: str) -> None:
    """2x2 counts with row-normalised rates (TNR/FPR over FNR/TPR), coloured by rate."""
    grid = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=float)
    totals = grid.sum(axis=1, keepdims=True)
    rates = np.divide(grid, totals, out=np.zeros_like(grid), where=totals > 0)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(grid):
        ax.text(j, i, f"{int(count)}\n{rates[i, j]:.1%}", ha="center", va="center", fontsize=11,
                color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks([0, 1], ["real", "fake"])
    ax.set_yticks([0, 1], ["real", "fake"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nacc {counts['accuracy']:.3f}, bal. acc {counts['balanced_accuracy']:.3f}",
                 fontsize=10)


def plot_confusion(run: RunResult, out_png: Path, svg: bool = False) -> Path:
    """Frame and video decisions at the validation threshold, side by side, to show which errors dominate."""
    check_scores_table(run.scores, f"confusion of {run.name}")
    agg = run.video_agg
    videos = metrics.video_scores(run.scores, agg)
    frame = metrics.threshold_metrics(run.scores["label"], run.scores["score"], run.threshold)
    video = metrics.threshold_metrics(videos["label"], videos["score"], run.threshold)
    fig = new_figure(8.4, 4.4)
    left, right = fig.subplots(1, 2)
    _confusion_panel(left, frame, f"frames (n={len(run.scores)})")
    _confusion_panel(right, video, f"videos, {agg} score (n={len(videos)})")
    fig.suptitle(f"{run.name}: fake iff score ≥ {run.threshold:.4g}")
    return save_figure(fig, out_png, svg)


# ---------------------------------------------------------------------------- train x test matrix

def _ordered_union(*columns: pd.Series) -> list[str]:
    """Labels in first-seen order, so train rows and test columns line up on the diagonal."""
    seen: dict[str, None] = {}
    for col in columns:
        seen.update(dict.fromkeys(col.astype(str)))
    return list(seen)


def matrix_grid(matrix: pd.DataFrame, value: str) -> pd.DataFrame:
    """The long matrix table (train, test, value) as a train x test grid, diagonal first-seen aligned."""
    missing = [c for c in ("train", "test", value) if c not in matrix.columns]
    if missing:
        raise UserError(f"matrix plot: table lacks column(s) {', '.join(missing)}")
    if matrix.empty:
        raise UserError("matrix plot: no rows")
    long = matrix.assign(train=matrix["train"].astype(str), test=matrix["test"].astype(str))
    dup = long.duplicated(["train", "test"])
    if dup.any():
        raise UserError(f"matrix plot: {int(dup.sum())} duplicate train/test pair(s)")
    values = pd.to_numeric(long[value], errors="coerce")
    if values.isna().all():
        raise UserError(f"matrix plot: column {value!r} has no numbers")
    order = _ordered_union(long["train"], long["test"])
    wide = long.assign(**{value: values}).pivot(index="train", columns="test", values=value)
    rows = [o for o in order if o in wide.index]
    cols = [o for o in order if o in wide.columns]
    return wide.loc[rows, cols]


def matrix_notes(matrix: pd.DataFrame, wide: pd.DataFrame) -> list[list[str]]:
    """Per grid cell, the long table's `backbone` note ('backbone saw X' on a LoRA cache), '' where none."""
    if "backbone" not in matrix.columns:
        return [["" for _ in wide.columns] for _ in wide.index]
    notes = matrix["backbone"].fillna("")
    lookup = {(str(t), str(c)): str(n) for t, c, n in zip(matrix["train"], matrix["test"], notes)}
    return [[lookup.get((r, c), "") for c in wide.columns] for r in wide.index]


def matrix_marks(matrix: pd.DataFrame, wide: pd.DataFrame) -> list[list[bool]]:
    """Per grid cell, whether it is in-domain (the long table's `in_domain`; without it, the diagonal)."""
    if "in_domain" not in matrix.columns:
        return [[r == c for c in wide.columns] for r in wide.index]
    inside = {(str(t), str(c)) for t, c, own in zip(matrix["train"], matrix["test"], matrix["in_domain"])
              if bool(own) and own == own}
    return [[(r, c) in inside for c in wide.columns] for r in wide.index]


def plot_matrix(matrix: pd.DataFrame, out_png: Path, value: str = "frame_auc", svg: bool = False) -> Path:
    """Generalisation heatmap (training sources x test sets) from a long table, on a diverging scale centred on
    chance (0.5: white; blue above, red below, so a below-chance cell is not hidden); in-domain cells outlined."""
    wide = matrix_grid(matrix, value)
    data = wide.to_numpy(dtype=float)
    n_rows, n_cols = data.shape
    fig = new_figure(1.15 * n_cols + 2.8, 0.75 * n_rows + 2.0)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=TwoSlopeNorm(0.5, 0.0, 1.0), aspect="auto")
    notes = matrix_notes(matrix, wide)
    marks = matrix_marks(matrix, wide)
    for (i, j), v in np.ndenumerate(data):
        text = "n/a" if np.isnan(v) else f"{v:.3f}"
        note = notes[i][j]
        ax.text(j, i, f"{text}\n{note}" if note else text, ha="center", va="center", fontsize=7 if note else 9,
                color="black" if np.isnan(v) or abs(v - 0.5) < 0.3 else "white")
        if note:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="lightgrey",
                                   linewidth=0))
        if marks[i][j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
    ax.set_xticks(range(n_cols), wide.columns, rotation=30, ha="right")
    ax.set_yticks(range(n_rows), wide.index)
    several = "dataset" in matrix.columns and matrix["dataset"].nunique() > 1
    ax.set_xlabel("test manipulation or data set" if several else "test manipulation")
    ax.set_ylabel("training source" if several else "train manipulation")
    pretty = value.replace("_", " ").replace("auc", "AUC")
    ax.set_title(f"{pretty}: trained on rows, tested on columns (outlined: in-domain)")
    fig.colorbar(image, ax=ax, label=f"{pretty} (0.5 = chance)")
    return save_figure(fig, out_png, svg)
