"""Tables and figures of the comparisons (evaluate/compare.py): frames per video, paired differences,
threshold transfer, robustness. Cells are formatted once, here, for both Markdown and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipforensics.report.figures import new_figure, save_figure
from clipforensics.report.tables import Row, Table, ci_cell, num, one_line


def _ci(point: float, ci: list[float] | None) -> str:
    return ci_cell(num(point), ci)


def frames_table(fpv: dict[str, list[dict[str, Any]]]) -> Table:
    counts = [str(r["frames"]) for r in next(iter(fpv.values()))]
    rows = tuple(Row((one_line(name), *(_ci(r["video_auc"], r["video_auc_ci"]) for r in rs)))
                 for name, rs in fpv.items())
    return Table(columns=("run", *(f"video AUC, {c} frames/video" for c in counts)), rows=rows,
                 right=(False,) + (True,) * len(counts),
                 note="Frames of each test video evenly spread (the protocol's rule); 'all' is the table above.")


def paired_table(pairs: list[dict[str, Any]]) -> Table:
    rows = []
    for p in pairs:
        cells = [one_line(f"{p['a']} − {p['b']}")]
        for level in ("frame", "video"):
            e = p[level]
            cells.append(_ci(e["diff"], e.get("diff_ci")))
            cells.append("yes" if e.get("distinguishable") else "no" if "distinguishable" in e else "–")
        d = p["video"]["delong"]
        cells.append(f"z={d['z']:.2f}, p={d['p']:.3g}")
        rows.append(Row(tuple(cells)))
    return Table(columns=("pair", "Δ frame AUC [95% CI]", "frame CI excludes 0", "Δ video AUC [95% CI]",
                          "video CI excludes 0", "DeLong (video)"), rows=tuple(rows),
                 right=(False, True, False, True, False, True),
                 note="Paired bootstrap: each resample draws the same videos (within class) for both runs. DeLong's "
                      "test at video level only, where units are independent; frames of a video are not.")


def transfer_table(transfer: dict[str, dict[str, Any]]) -> Table:
    rules = ("val", "fixed 0.5", "test oracle")
    rows = tuple(Row((one_line(name), *(f"{num(t[level][r]['accuracy'])} @ {t[level][r]['threshold']:.3g}"
                                        for level in ("frame", "video") for r in rules)))
                 for name, t in transfer.items())
    columns = ("run", *(f"{level} acc, {r} threshold" for level in ("frame", "video") for r in rules))
    return Table(columns=columns, rows=rows, right=(False,) + (True,) * 6,
                 warning="The test-oracle threshold is chosen on test labels: an optimistic bound, never a result. "
                         "Only the validation threshold gives a reportable accuracy.")


def plot_frames(fpv: dict[str, list[dict[str, Any]]], out_png: Path) -> Path:
    fig = new_figure(6, 3.8)
    ax = fig.subplots()
    for name, rows in fpv.items():
        x = np.arange(len(rows))
        auc = [r["video_auc"] for r in rows]
        line, = ax.plot(x, auc, marker="o", label=name)
        if all(r["video_auc_ci"] for r in rows):
            ci = np.array([r["video_auc_ci"] for r in rows])
            ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.12)
    ax.set_xticks(np.arange(len(rows)), [str(r["frames"]) for r in rows])
    ax.set(xlabel="frames used per test video", ylabel="video AUC", ylim=(0, 1.02),
           title="video AUC vs frames per video (95% CI)")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, out_png)
