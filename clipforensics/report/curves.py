"""The figures researchers expect, drawn from one run's scored test rows: ROC and precision-recall per test
manipulation (in-domain and unseen in separate panels), score histograms per class and manipulation beside the
decision metrics against the threshold (validation threshold marked), and a reliability diagram of all runs.

Each curve is all test reals against one manipulation's fakes, the rows the table's per-manipulation cells
measure, so a curve and its cell agree. Kinds (in-domain / backbone-seen / unseen) come from the caller (the
reading's rule), never decided here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from sklearn.metrics import precision_recall_curve

from clipforensics.data.provenance import BACKBONE_SEEN, IN_DOMAIN, UNSEEN
from clipforensics.measure import curve, metrics
from clipforensics.measure.result import RunResult
from clipforensics.report.figures import new_figure, save_figure

PANELS = ((IN_DOMAIN, (IN_DOMAIN, BACKBONE_SEEN)), (UNSEEN, (UNSEEN,)))
"""Panel title -> the kinds it holds: a backbone-seen manipulation is drawn beside in-domain, never as unseen."""
STYLE = {"in-domain": "-", "backbone-seen": ":", "unseen": "-"}
CALIBRATION_BINS = 10


def manipulation_tables(run: RunResult, level: str = "video") -> dict[str, pd.DataFrame]:
    """Test manipulation -> all test reals with that manipulation's fakes, at frame or video level."""
    scores = run.scores
    real = scores[scores["label"] == 0]
    out = {}
    for manipulation in dict.fromkeys(scores.loc[scores["label"] == 1, "manipulation"]):
        table = pd.concat([real, scores[(scores["label"] == 1) & (scores["manipulation"] == manipulation)]])
        out[str(manipulation)] = table if level == "frame" else metrics.video_scores(table, run.video_agg)
    return out


def _curve_panel(roc: Axes, pr: Axes, tables: dict[str, pd.DataFrame], kinds: dict[str, str]) -> None:
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    for name, table in tables.items():
        y, s = table["label"].to_numpy(dtype=float), table["score"].to_numpy(dtype=float)
        fpr, tpr = curve.roc_curve(y, s)
        tag = " (backbone saw)" if kinds.get(name) == "backbone-seen" else ""
        line, = roc.plot(fpr, tpr, STYLE.get(kinds.get(name, "unseen"), "-"),
                         label=f"{name}{tag}: AUC {curve.roc_auc(y, s):.3f}")
        precision, recall, _ = precision_recall_curve(y, s)
        pr.step(recall, precision, where="post", color=line.get_color(), linestyle=line.get_linestyle(),
                label=f"{name}: AP {curve.average_precision(y, s):.3f}")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall (fakes caught)", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        if tables:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18), frameon=False)


def plot_curves(run: RunResult, kinds: dict[str, str], out_png: Path, level: str = "video") -> Path:
    """ROC (top) and precision-recall (bottom) per test manipulation; in-domain left, unseen right."""
    tables = manipulation_tables(run, level)
    fig = new_figure(9.5, 9.5)
    axes = fig.subplots(2, 2)
    for col, (title, held) in enumerate(PANELS):
        mine = {m: t for m, t in tables.items() if kinds.get(m, "unseen") in held}
        _curve_panel(axes[0][col], axes[1][col], mine, kinds)
        axes[0][col].set_title(f"{title} ({len(mine)} manipulation{'s' * (len(mine) != 1)})")
    fig.suptitle(f"{run.name}: ROC and precision-recall per test manipulation ({level} level, all test reals "
                 "against each)")
    fig.subplots_adjust(hspace=0.75)
    return save_figure(fig, out_png, svg=True)


def _histograms(ax: Axes, run: RunResult) -> None:
    scores = run.scores
    bins = np.linspace(float(scores["score"].min()), float(scores["score"].max()), 31)
    groups = [("real", scores[scores["label"] == 0])]
    groups += [(str(m), g) for m, g in scores[scores["label"] == 1].groupby("manipulation", sort=True)]
    for name, group in groups:
        ax.hist(group["score"], bins=bins, histtype="step", linewidth=2 if name == "real" else 1.3,
                density=True, label=f"{name} (n={len(group)})")
    ax.axvline(run.threshold, color="black", linestyle="--", label=f"val threshold {run.threshold:.3g}")
    ax.set(xlabel="frame score", ylabel="density", title="scores per class and manipulation")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.2), frameon=False, ncol=2)


def threshold_sweep(labels: np.ndarray, scores: np.ndarray, n: int = 101) -> dict[str, np.ndarray]:
    """TPR, TNR and balanced accuracy of 'fake iff score >= t' over evenly spaced thresholds t."""
    t = np.linspace(float(scores.min()), float(scores.max()), n)
    fake = scores[None, :] >= t[:, None]
    tpr = (fake & (labels == 1)).sum(axis=1) / max(int((labels == 1).sum()), 1)
    tnr = (~fake & (labels == 0)).sum(axis=1) / max(int((labels == 0).sum()), 1)
    return {"threshold": t, "TPR (fakes caught)": tpr, "TNR (reals passed)": tnr, "balanced accuracy": (tpr + tnr) / 2}


def plot_scores(run: RunResult, out_png: Path) -> Path:
    """Score histograms per class and manipulation, and TPR / TNR / balanced accuracy against the threshold on
    the test frames, the validation threshold (the one the table uses) marked on both."""
    fig = new_figure(11, 4.6)
    hist_ax, sweep_ax = fig.subplots(1, 2)
    _histograms(hist_ax, run)
    sweep = threshold_sweep(run.scores["label"].to_numpy(), run.scores["score"].to_numpy(dtype=float))
    for name, values in sweep.items():
        if name != "threshold":
            sweep_ax.plot(sweep["threshold"], values, label=name)
    sweep_ax.axvline(run.threshold, color="black", linestyle="--", label="validation threshold")
    sweep_ax.set(xlabel="threshold on frame score", ylabel="rate on test frames", ylim=(0, 1.02),
                 title="decision metrics against the threshold")
    sweep_ax.grid(alpha=0.3)
    sweep_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.2), frameon=False)
    fig.suptitle(f"{run.name}: test scores")
    return save_figure(fig, out_png, svg=True)


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(mean score, fraction fake, count) per non-empty equal-width bin over [0, 1], and whether the scores
    had to be min-max scaled into [0, 1] first (a margin, not a probability)."""
    scaled = bool(scores.min() < 0 or scores.max() > 1)
    if scaled:
        span = float(scores.max() - scores.min()) or 1.0
        scores = (scores - scores.min()) / span
    which = np.minimum((scores * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean = np.bincount(which, weights=scores, minlength=bins)
    fakes = np.bincount(which, weights=labels.astype(float), minlength=bins)
    kept = count > 0
    return mean[kept] / count[kept], fakes[kept] / count[kept], count[kept], scaled


def plot_calibration(runs: list[RunResult], out_png: Path) -> Path:
    """Reliability diagram of every run on the test frames: fraction fake against mean score per bin."""
    fig = new_figure(8.5, 5.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for run in runs:
        mean, frac, _, scaled = reliability(run.scores["label"].to_numpy(), run.scores["score"].to_numpy(float))
        ax.plot(mean, frac, marker="o", markersize=4, label=run.name + (" (min-max scaled)" if scaled else ""))
    ax.set(xlabel="mean score in bin", ylabel="fraction of fakes in bin", xlim=(0, 1), ylim=(0, 1.02),
           title="reliability diagram, test frames (fraction fake depends on the test set's mix)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    return save_figure(fig, out_png, svg=True)
