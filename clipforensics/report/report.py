"""Human-readable results: a markdown table, ROC / confusion / matrix figures, an error grid, one HTML page.

Everything here only renders what the evaluator already computed (metrics dicts from
`clipforensics.metrics`) plus the test-split scores tables, so numbers in the report can never drift
from the numbers in the JSON. Figures are drawn on bare `Figure` objects with the Agg canvas, never
through pyplot, so no global figure registry grows and no display is needed. Every file lands at
its final path through `atomic_path`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from clipforensics.evaluate import metrics
from clipforensics.core.io import atomic_path, write_csv, write_text
from clipforensics.core.errors import UserError

DPI = 110
MIN_VIDEOS = 30
THUMB_PX = 112
SCORE_COLUMNS = ("path", "video", "manipulation", "label", "split", "score")
TABLE_COLUMNS = ("run", "test set", "frame AUC [95% CI]", "frame EER", "frame AP", "video AUC [95% CI]",
                 "video EER", "acc", "F1", "bal. acc", "n videos real/fake")
_SUB_ROW = "↳ "
_IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
               ".gif": "image/gif", ".webp": "image/webp"}


@dataclass
class RunResult:
    """One scorer's test-split outcome, as the evaluator computed it."""

    name: str
    scores: pd.DataFrame
    threshold: float
    threshold_note: str
    metrics: dict
    per_manipulation: dict
    data_root: str | None = None


# ---------------------------------------------------------------------------- shared helpers

def _check_scores(df: pd.DataFrame, what: str) -> None:
    """A clear error up front instead of a KeyError deep inside a plot."""
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{what}: scores table lacks column(s) {', '.join(missing)}")
    if df.empty:
        raise UserError(f"{what}: scores table has no rows")


def _video_agg(run: RunResult) -> str:
    """The aggregator the evaluator used, so figures match the table's video numbers."""
    return str(run.metrics.get("video", {}).get("agg", "mean"))


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, outside pyplot, so it is freed as soon as it goes out of scope."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_png: Path) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return out_png


def _safe_name(name: str) -> str:
    """Run names go into file names; anything outside a portable set becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


# ---------------------------------------------------------------------------- markdown table

def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.3f}"


def _with_ci(level: dict, name: str) -> str:
    """'0.912 [0.85, 0.96]': interval bounds with two decimals, as wide intervals deserve."""
    ci = level.get(f"{name}_ci")
    point = _num(level.get(name))
    if not ci:
        return point
    return f"{point} [{float(ci[0]):.2f}, {float(ci[1]):.2f}]"


def _one_line(text: str) -> str:
    """A newline inside a name or note would end its markdown block early."""
    return " ".join(str(text).splitlines())


def _md_cell(text: str) -> str:
    """Keep one cell one cell: escape pipes, flatten newlines."""
    return _one_line(text).replace("|", "\\|")


def _table_row(run_cell: str, test_set: str, result: dict, decision_level: str) -> list[str]:
    frame, video = result["frame"], result["video"]
    decision = result[decision_level]
    return [
        run_cell, test_set,
        _with_ci(frame, "auc"), _num(frame.get("eer")), _num(frame.get("ap")),
        _with_ci(video, "auc"), _num(video.get("eer")),
        _num(decision.get("accuracy")), _num(decision.get("f1")), _num(decision.get("balanced_accuracy")),
        f"{video.get('n_real', '?')}/{video.get('n_fake', '?')}",
    ]


def _run_rows(run: RunResult, decision_level: str) -> Iterator[tuple[list[str], dict]]:
    """The overall row, then one row per test manipulation (all reals against that manipulation)."""
    yield _table_row(run.name, "all", run.metrics, decision_level), run.metrics["video"]
    for manip, result in run.per_manipulation.items():
        yield _table_row("", f"{_SUB_ROW}{manip}", result, decision_level), result["video"]


def _small_class_warning(counts: list[tuple[int, int]]) -> list[str]:
    """One line when any row has fewer than MIN_VIDEOS videos in a class: its intervals are wide."""
    small = [(r, f) for r, f in counts if min(r, f) < MIN_VIDEOS]
    if not small:
        return []
    fewest = f"{min(r for r, _ in small)} real, {min(f for _, f in small)} fake"
    return ["", f"Warning: {len(small)} of {len(counts)} rows have fewer than {MIN_VIDEOS} test videos "
                f"in a class (fewest: {fewest}); intervals are wide."]


def markdown_table(runs: list[RunResult], decision_level: str = "frame") -> str:
    """One table for all runs, so scorers compare at a glance; threshold notes and warnings below it.

    acc / F1 / bal. acc are at each run's threshold, on frames (default) or videos (`decision_level`).
    """
    if not runs:
        raise UserError("report: no runs to tabulate")
    if decision_level not in ("frame", "video"):
        raise UserError(f"decision_level must be 'frame' or 'video', got {decision_level!r}")
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "| " + " | ".join(["---"] * 2 + ["---:"] * (len(TABLE_COLUMNS) - 2)) + " |"]
    counts: list[tuple[int, int]] = []
    for run in runs:
        for cells, video in _run_rows(run, decision_level):
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
            counts.append((int(video.get("n_real", 0)), int(video.get("n_fake", 0))))
    lines += ["", f"acc, F1 and bal. acc are {decision_level}-level at each run's threshold; "
                  "CIs resample whole videos within each class.", ""]
    lines += [f"- {_one_line(run.name)}: threshold {run.threshold:.4g} ({_one_line(run.threshold_note)}); "
              f"video score = {_video_agg(run)} of frame scores" for run in runs]
    lines += _small_class_warning(counts)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- ROC

def _roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score, from (0, 0) to (1, 1); ties form one diagonal step."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.r_[0.0, np.cumsum(y)[last]]
    fp = np.r_[0.0, np.cumsum(1 - y)[last]]
    return fp / fp[-1], tp / tp[-1]


def _level_table(run: RunResult, level: str, video_agg: str) -> pd.DataFrame:
    _check_scores(run.scores, f"ROC of {run.name}")
    if level == "frame":
        return run.scores
    return metrics.video_scores(run.scores, video_agg)


def plot_roc(runs: list[RunResult], out_png: Path, level: str = "frame", video_agg: str = "mean") -> Path:
    """Overlaid ROC curves, AUC and EER in the legend, EER points marked, to compare scorers directly."""
    if not runs:
        raise UserError("ROC plot: no runs")
    if level not in ("frame", "video"):
        raise UserError(f"ROC level must be 'frame' or 'video', got {level!r}")
    fig = new_figure(6.2, 5.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for run in runs:
        table = _level_table(run, level, video_agg)
        y = table["label"].to_numpy(dtype=float)
        s = table["score"].to_numpy(dtype=float)
        auc = metrics.roc_auc(y, s)
        rate, _ = metrics.eer(y, s)
        fpr, tpr = _roc_points(y, s)
        (line,) = ax.plot(fpr, tpr, linewidth=1.8, label=f"{run.name} (AUC {auc:.3f}, EER {rate:.3f})")
        ax.plot([rate], [1 - rate], marker="o", markersize=7, color=line.get_color(), markeredgecolor="black")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black"))
    labels.append("EER point")
    ax.legend(handles, labels, loc="lower right", fontsize=8)
    what = "frames" if level == "frame" else f"videos, {video_agg} of frame scores"
    ax.set_title(f"ROC on the test split ({what})")
    ax.set_xlabel("false positive rate (real flagged as fake)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    return save_figure(fig, out_png)


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


def plot_confusion(run: RunResult, out_png: Path) -> Path:
    """Frame and video decisions at the validation threshold, side by side, to show which errors dominate."""
    _check_scores(run.scores, f"confusion of {run.name}")
    agg = _video_agg(run)
    videos = metrics.video_scores(run.scores, agg)
    frame = metrics.threshold_metrics(run.scores["label"], run.scores["score"], run.threshold)
    video = metrics.threshold_metrics(videos["label"], videos["score"], run.threshold)
    fig = new_figure(8.4, 4.4)
    left, right = fig.subplots(1, 2)
    _confusion_panel(left, frame, f"frames (n={len(run.scores)})")
    _confusion_panel(right, video, f"videos, {agg} score (n={len(videos)})")
    fig.suptitle(f"{run.name}: fake iff score ≥ {run.threshold:.4g}")
    return save_figure(fig, out_png)


# ---------------------------------------------------------------------------- error analysis

def _frame_errors(scores: pd.DataFrame, threshold: float) -> pd.Series:
    """True where the hard decision (fake iff score >= threshold) disagrees with the label."""
    return (scores["score"] >= threshold) != (scores["label"] == 1)


def _worst_videos(scores: pd.DataFrame, threshold: float, top_k: int) -> pd.DataFrame:
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


def _confident_mistakes(scores: pd.DataFrame, threshold: float, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(false positives by descending score, false negatives by ascending score), n of each at most."""
    real, fake = scores[scores["label"] == 0], scores[scores["label"] == 1]
    fp = real[real["score"] >= threshold].sort_values(["score", "path"], ascending=[False, True], kind="stable")
    fn = fake[fake["score"] < threshold].sort_values(["score", "path"], kind="stable")
    return fp.head(n), fn.head(n)


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
        with Image.open(path) as img:
            img.draft("RGB", (THUMB_PX, THUMB_PX))
            img = img.convert("RGB")
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
    fp, fn = _confident_mistakes(run.scores, run.threshold, grid)
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
    _check_scores(run.scores, f"error analysis of {run.name}")
    if top_k < 1 or grid < 1:
        raise UserError(f"error analysis: top_k and grid must be at least 1, got {top_k} and {grid}")
    out_dir = Path(out_dir)
    stem = _safe_name(run.name)
    worst = _worst_videos(run.scores, run.threshold, top_k)
    csv_path = out_dir / f"errors_{stem}.csv"
    write_csv(csv_path, worst)
    png_path = out_dir / f"errors_{stem}.png"
    fp_records, fn_records = _error_grid(run, png_path, grid)
    return {"csv": csv_path, "png": png_path, "top_videos": worst.to_dict("records"),
            "false_positives": fp_records, "false_negatives": fn_records}


# ---------------------------------------------------------------------------- train x test matrix

def _ordered_union(*columns: pd.Series) -> list[str]:
    """Labels in first-seen order, so train rows and test columns line up on the diagonal."""
    seen: dict[str, None] = {}
    for col in columns:
        seen.update(dict.fromkeys(col.astype(str)))
    return list(seen)


def _matrix_grid(matrix: pd.DataFrame, value: str) -> pd.DataFrame:
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


def plot_matrix(matrix: pd.DataFrame, out_png: Path, value: str = "frame_auc") -> Path:
    """Cross-manipulation heatmap (train rows x test columns) from a long table; diagonal cells outlined."""
    wide = _matrix_grid(matrix, value)
    data = wide.to_numpy(dtype=float)
    n_rows, n_cols = data.shape
    fig = new_figure(1.15 * n_cols + 2.8, 0.75 * n_rows + 2.0)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.5, vmax=1.0, aspect="auto")
    for (i, j), v in np.ndenumerate(data):
        text = "n/a" if np.isnan(v) else f"{v:.3f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=9,
                color="black" if np.isnan(v) or v >= 0.8 else "white")
        if wide.index[i] == wide.columns[j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_xticks(range(n_cols), wide.columns, rotation=30, ha="right")
    ax.set_yticks(range(n_rows), wide.index)
    ax.set_xlabel("test manipulation")
    ax.set_ylabel("train manipulation")
    pretty = value.replace("_", " ").replace("auc", "AUC")
    ax.set_title(f"{pretty}: trained on rows, tested on columns")
    fig.colorbar(image, ax=ax, label=pretty)
    return save_figure(fig, out_png)


# ---------------------------------------------------------------------------- HTML

def _split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; escaped pipes stay inside their cell."""
    inner = line.strip().removeprefix("|")
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _is_separator(cells: list[str]) -> bool:
    return bool(cells) and all(re.fullmatch(r":?-+:?", c) for c in cells)


def _html_table(header: list[str], body: list[list[str]], align: list[str]) -> str:
    def cells(tag: str, row: list[str]) -> str:
        padded = row + [""] * (len(header) - len(row))
        return "".join(f'<{tag} style="text-align:{a}">{html.escape(c)}</{tag}>' for c, a in zip(padded, align))

    rows = "".join(f'<tr class="{"sub" if r and not r[0] else "run"}">{cells("td", r)}</tr>' for r in body)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{rows}</tbody></table>"


def _table_block(lines: list[str]) -> str:
    rows = [_split_row(line) for line in lines]
    header, body = rows[0], rows[1:]
    align = ["left"] * len(header)
    if body and _is_separator(body[0]):
        align = ["right" if c.endswith(":") else "left" for c in body[0]] + ["left"] * len(header)
        body = body[1:]
    return _html_table(header, body, align[:len(header)])


def _blocks(markdown: str) -> Iterator[tuple[str, list[str]]]:
    """Consecutive lines grouped by kind: table, list, heading, paragraph (blank lines separate)."""
    kind_of = {"|": "table", "- ": "list", "* ": "list", "#": "heading"}
    current: tuple[str, list[str]] | None = None
    for raw in markdown.splitlines():
        line = raw.strip()
        kind = next((k for p, k in kind_of.items() if line.startswith(p)), "para") if line else None
        if current and (kind != current[0] or kind == "heading"):
            yield current
            current = None
        if kind:
            current = current or (kind, [])
            current[1].append(line)
    if current:
        yield current


def markdown_to_html(markdown: str) -> str:
    """The subset of markdown the report writes: pipe tables, '-' lists, '#' headings, paragraphs."""
    parts = []
    for kind, lines in _blocks(markdown):
        if kind == "table":
            parts.append(_table_block(lines))
        elif kind == "list":
            items = "".join(f"<li>{html.escape(line[2:].strip())}</li>" for line in lines)
            parts.append(f"<ul>{items}</ul>")
        elif kind == "heading":
            level = min(6, len(lines[0]) - len(lines[0].lstrip("#")) + 1)
            parts.append(f"<h{level}>{html.escape(lines[0].lstrip('#').strip())}</h{level}>")
        else:
            css = ' class="warning"' if lines[0].lower().startswith("warning") else ""
            parts.append(f"<p{css}>{html.escape(' '.join(lines))}</p>")
    return "\n".join(parts)


def _frame_cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def dataframe_to_html(df: pd.DataFrame) -> str:
    """A DataFrame as the same escaped table markup (floats with 3 decimals)."""
    header = [str(c) for c in df.columns]
    body = [[_frame_cell(v) for v in row] for row in df.itertuples(index=False)]
    align = ["right" if pd.api.types.is_numeric_dtype(df[c]) else "left" for c in df.columns]
    return _html_table(header, body, align)


def _image_figure(caption: str, path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"report: image {path} not found")
    mime = _IMAGE_MIME.get(path.suffix.lower(), "image/png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = html.escape(caption)
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.9em;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;white-space:nowrap}
th{background:#f0f0f0}
tr.sub td{color:#555;font-size:0.95em}
tr.sub td:nth-child(2){padding-left:1.5em}
p.warning{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}
figure{margin:1.5em 0}
img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{color:#555;font-size:0.9em}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:0.8em}
"""


def write_html(out_path: Path, title: str, markdown: str | pd.DataFrame, images: list[tuple[str, Path]],
               metrics_json: dict | None = None) -> Path:
    """One self-contained page (images inlined as data URIs) that opens anywhere, even offline.

    `images` are (caption, path) pairs; `markdown` is the `markdown_table` text or a DataFrame.
    """
    body = dataframe_to_html(markdown) if isinstance(markdown, pd.DataFrame) else markdown_to_html(markdown)
    figures = "\n".join(_image_figure(caption, path) for caption, path in images)
    details = ""
    if metrics_json is not None:
        dumped = json.dumps(metrics_json, indent=2, sort_keys=True, default=str)
        details = f"<details><summary>Metrics (JSON)</summary><pre>{html.escape(dumped)}</pre></details>"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n{figures}\n{details}\n</body></html>\n")
    out_path = Path(out_path)
    write_text(out_path, page)
    return out_path
