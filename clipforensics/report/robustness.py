"""Table and figure of the robustness evaluation (studies/robustness.py): AUC against severity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipforensics.report.figures import new_figure, save_figure
from clipforensics.measure.specs import LEVELS, MetricSpec, summary_specs
from clipforensics.report.tables import Row, Table, ci_cell, direction_note, metric_header, one_line

CLEAN = "clean"  # the copy and kind of the unperturbed rows, as studies/robustness.py writes them


def _shown(rows: list[dict[str, Any]]) -> list[tuple[str, MetricSpec]]:
    """(level, spec) of every summary metric the rows carry: a report written before a metric was
    registered still folds in, without its column."""
    return [(level, spec) for level in LEVELS for spec in summary_specs()
            if any(f"{level}_{spec.name}" in r for r in rows)]


def robustness_table(rows: list[dict[str, Any]]) -> Table:
    shown = _shown(rows)
    cells = tuple(Row((one_line(r["run"]), r["copy"],
                       *(ci_cell(spec.format(r[f"{level}_{spec.name}"]), r[f"{level}_{spec.name}_ci"])
                         for level, spec in shown))) for r in rows)
    return Table(columns=("run", "test copy", *(metric_header(spec, level, True) for level, spec in shown)),
                 rows=cells, right=(False, False) + (True,) * len(shown),
                 note="Heads and LoRA runs as trained (no refit); test rows scored on each perturbed copy, validation rows clean "
                      "(the threshold a deployed detector carries). Intervals resample test videos. "
                      + direction_note([spec for _, spec in shown]))


def panel_points(rows: list[dict[str, Any]], kind: str) -> tuple[list[str], dict[str, list[tuple[int, dict]]]]:
    """One panel's tick labels and each run's (position, row) points, clean at 0.

    The positions are the levels of `kind` any run was scored on, so runs whose caches hold other copies
    still put each level at its own tick (a run without a level skips it, never shifts onto another)."""
    levels = sorted({(r["severity"], r["level"]) for r in rows if r["kind"] == kind != CLEAN})
    position = {lvl: i + 1 for i, (_, lvl) in enumerate(levels)}
    points: dict[str, list[tuple[int, dict]]] = {}
    for r in rows:
        if r["kind"] == CLEAN or r["kind"] == kind:
            points.setdefault(r["run"], []).append((0 if r["kind"] == CLEAN else position[r["level"]], r))
    return [CLEAN, *(f"{lvl:g}" for _, lvl in levels)], {run: sorted(p, key=lambda xp: xp[0])
                                                          for run, p in points.items()}


def plot_robustness(rows: list[dict[str, Any]], out_png: Path, level: str = "video",
                    svg: bool = False) -> Path:
    """One panel per perturbation kind: AUC against severity (clean at the left), one curve per run."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows if r["kind"] != CLEAN))
    fig = new_figure(3.6 * max(1, len(kinds)), 3.6)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(kinds)), squeeze=False)[0])
    for ax, kind in zip(axes, kinds or [CLEAN]):
        ticks, runs = panel_points(rows, kind)
        for run, points in runs.items():
            x = np.array([at for at, _ in points])
            line, = ax.plot(x, [p[f"{level}_auc"] for _, p in points], marker="o", label=run)
            cis = [p[f"{level}_auc_ci"] for _, p in points]
            if all(cis):
                ci = np.array(cis)
                ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.12)
        ax.set_xticks(np.arange(len(ticks)), ticks)
        ax.set(xlabel=f"{kind} (more severe →)", ylim=(0, 1.02))
    axes[0].set_ylabel(f"{level} AUC")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{level} AUC vs perturbation severity (95% CI)")
    return save_figure(fig, out_png, svg)
