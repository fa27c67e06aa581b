"""Error analysis: which videos a scorer gets wrong most, and its most confident wrong frames.

Decisions are "fake iff score >= threshold" at the run's validation threshold, the same rule as
the table's accuracy, so the errors shown are the errors counted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_csv
from clipforensics.data.images import load_rgb
from clipforensics.data.scores import check_scores_table
from clipforensics.measure.result import RunResult
from clipforensics.report.figures import new_figure, save_figure

THUMB_PX = 112


def safe_name(name: str) -> str:
    """Run names go into file names; anything outside a portable set becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


def _frame_errors(scores: pd.DataFrame, threshold: float) -> pd.Series:
    """True where the hard decision (fake iff score >= threshold) disagrees with the label."""
    return (scores["score"] >= threshold) != (scores["label"] == 1)


def worst_videos(scores: pd.DataFrame, threshold: float, top_k: int) -> pd.DataFrame:
    """Videos with any error, by error rate, ties broken by how far the mean score sits on the wrong side."""
    table = scores.assign(error=_frame_errors(scores, threshold).astype(float))
    per_video = table.groupby("video", sort=True, observed=True).agg(
        manipulation=("manipulation", "first"), label=("label", "first"), n_frames=("score", "size"),
        error_rate=("error", "mean"), mean_score=("score", "mean")).reset_index()
    wrong_side = np.where(per_video["label"] == 1, threshold - per_video["mean_score"],
                          per_video["mean_score"] - threshold)
    ranked = per_video.assign(_margin=wrong_side)[per_video["error_rate"] > 0].sort_values(
        ["error_rate", "_margin", "video"], ascending=[False, False, True], kind="stable")
    return ranked.drop(columns="_margin").head(top_k).reset_index(drop=True)


def confident_mistakes(scores: pd.DataFrame, threshold: float, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(false positives by descending score, false negatives by ascending score), n of each at most."""
    real, fake = scores[scores["label"] == 0], scores[scores["label"] == 1]
    fp = real[real["score"] >= threshold].sort_values(["score", "path"], ascending=[False, True], kind="stable")
    fn = fake[fake["score"] < threshold].sort_values(["score", "path"], kind="stable")
    return fp.head(n), fn.head(n)


# ---------------------------------------------------------------------------- the grid of frames

def _resolve(path: str, data_root: str | None) -> Path:
    """Frame paths are relative to the data root (POSIX or Windows separators) unless absolute."""
    text = str(path)
    p = Path(text)
    if not p.is_absolute() and "\\" in text:
        p = Path(text.replace("\\", "/"))
    if p.is_absolute() or data_root is None:
        return p
    return Path(data_root) / p


def _thumbnail(path: Path) -> np.ndarray | None:
    """The image shrunk to a thumbnail, or None for anything unreadable.

    Any decoder failure counts as unreadable (PIL raises many exception types on corrupt
    files), because one bad frame must not cost the whole report.
    """
    try:
        img = load_rgb(path)  # the picture the model saw: upright, 16-bit scaled
        img.thumbnail((THUMB_PX, THUMB_PX))
        return np.asarray(img)
    except Exception:  # noqa: BLE001 - see docstring
        return None


def _draw_tile(ax: Axes, row: dict, data_root: str | None) -> bool:
    """One thumbnail titled with score and video; a grey 'missing' tile when the file cannot be read."""
    image = _thumbnail(_resolve(row["path"], data_root))
    if image is None:
        ax.imshow(np.full((THUMB_PX, THUMB_PX, 3), 0.6))
        ax.text(THUMB_PX / 2, THUMB_PX / 2, "missing", ha="center", va="center", fontsize=9, color="black")
    else:
        ax.imshow(image)
    video = str(row["video"])
    video = video if len(video) <= 18 else "…" + video[-17:]
    ax.set_title(f"{row['score']:.3f}\n{video}", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return image is not None


def _grid_row(axes: Iterable[Axes], rows: pd.DataFrame, data_root: str | None, label: str) -> list[dict]:
    """Fill one row of tiles; return the shown frames as records (with whether each image loaded)."""
    axes = list(axes)
    axes[0].set_ylabel(label, fontsize=8)
    records = []
    for ax, row in zip(axes, rows.to_dict("records")):
        loaded = _draw_tile(ax, row, data_root)
        records.append({"path": str(row["path"]), "video": str(row["video"]),
                        "manipulation": str(row["manipulation"]), "label": int(row["label"]),
                        "score": float(row["score"]), "loaded": loaded})
    for ax in axes[len(records):]:
        ax.axis("off")
    if not records:
        axes[0].axis("on")
        axes[0].set_xticks([])
        axes[0].set_yticks([])
        axes[0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[0].transAxes)
    return records


def _error_grid(run: RunResult, out_png: Path, grid: int) -> tuple[list[dict], list[dict]]:
    fp, fn = confident_mistakes(run.scores, run.threshold, grid)
    fig = new_figure(1.45 * grid + 0.6, 4.4)
    axes = fig.subplots(2, grid, squeeze=False)
    fp_records = _grid_row(axes[0], fp, run.data_root, "false positives\n(real, highest score)")
    fn_records = _grid_row(axes[1], fn, run.data_root, "false negatives\n(fake, lowest score)")
    fig.suptitle(f"{run.name}: most confident mistakes at threshold {run.threshold:.4g} (title: score, video)")
    save_figure(fig, out_png)
    return fp_records, fn_records


def error_analysis(run: RunResult, out_dir: Path, top_k: int = 10, grid: int = 8) -> dict:
    """The worst videos (CSV) and the most confident wrong frames (PNG), to see what fools the scorer.

    Returns {"csv", "png", "top_videos", "false_positives", "false_negatives"}; the last two are
    the frames shown in the grid, in order, each with `loaded` False where a grey tile stands in.
    """
    check_scores_table(run.scores, f"error analysis of {run.name}")
    if top_k < 1 or grid < 1:
        raise UserError(f"error analysis: top_k and grid must be at least 1, got {top_k} and {grid}")
    out_dir = Path(out_dir)
    stem = safe_name(run.name)
    worst = worst_videos(run.scores, run.threshold, top_k)
    csv_path = out_dir / f"errors_{stem}.csv"
    write_csv(csv_path, worst)
    png_path = out_dir / f"errors_{stem}.png"
    fp_records, fn_records = _error_grid(run, png_path, grid)
    return {"csv": csv_path, "png": png_path, "top_videos": worst.to_dict("records"),
            "false_positives": fp_records, "false_negatives": fn_records}
