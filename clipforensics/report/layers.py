"""Table and figure of a layer sweep (studies/layer_sweep.py): validation AUC, which picks the layer, and each
test set's AUC beside it, per stored block."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clipforensics.core.io import write_text
from clipforensics.report.figures import new_figure, save_figure
from clipforensics.report.tables import Table, ci_cell, frame_table, to_markdown


def sweep_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Layer x test set: val AUC (which picks), then each test set's video AUC [CI] and frame AUC."""
    best = max(range(len(records)), key=lambda i: records[i]["val_video_auc"])
    rows = []
    for i, r in enumerate(records):
        row: dict[str, Any] = {"layer": r["layer"], "head": r["head"], "val video AUC": r["val_video_auc"],
                               "picked by val": "yes" if i == best else ""}
        for test_set, m in sorted(r["test"].items(), key=lambda item: (item[0] != "all", item[0])):
            row[f"{test_set} video AUC"] = ci_cell(f"{m['video_auc']:.3f}", m.get("video_auc_ci"))
            row[f"{test_set} frame AUC"] = m["frame_auc"]
        rows.append(row)
    return pd.DataFrame(rows)


SWEEP_NOTE = ("Validation video AUC picks the layer (row 'picked by val'); test AUCs are shown beside it, "
              "never used to choose.")


def sweep_report_table(records: list[dict[str, Any]]) -> Table:
    """The sweep as a report table, with the rule that picks the layer said under it."""
    return dataclasses.replace(frame_table(sweep_table(records)), note=SWEEP_NOTE)


def plot_sweep(records: list[dict[str, Any]], out_png: Path, svg: bool = False) -> Path:
    """Video AUC per layer, one panel per head: validation (which picks, dashed) and each test set with its
    interval, the picked layer marked."""
    heads = list(dict.fromkeys(r["head"] for r in records))
    fig = new_figure(4.5 * len(heads), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(heads)))
    best = max(records, key=lambda r: r["val_video_auc"])
    for ax, head in zip(axes, heads):
        mine = [r for r in records if r["head"] == head]
        x = np.arange(len(mine))
        ax.plot(x, [r["val_video_auc"] for r in mine], "k--o", label="val video AUC (picks)")
        for test_set in mine[0]["test"]:
            auc = np.array([r["test"][test_set]["video_auc"] for r in mine])
            line, = ax.plot(x, auc, marker="o", label=f"test {test_set}")
            cis = [r["test"][test_set].get("video_auc_ci") for r in mine]
            if all(cis):  # none with --bootstrap 0
                ci = np.array(cis)
                ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.12)
        if best["head"] == head:
            ax.axvline([r["layer"] for r in mine].index(best["layer"]), color="grey", linestyle=":")
        ax.set_xticks(x, [r["layer"] for r in mine])
        ax.set(xlabel="block (final = projected embedding)", ylabel="video AUC", title=head, ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, out_png, svg)


def write_sweep_report(out: Path, records: list[dict[str, Any]]) -> str:
    """layer_sweep.csv (the table's numbers), layer_sweep.md and layer_sweep.png in `out`; returns the markdown
    table, which the study prints."""
    write_text(out / "layer_sweep.csv", sweep_table(records).to_csv(index=False))
    markdown = to_markdown(sweep_report_table(records))
    write_text(out / "layer_sweep.md", markdown)
    plot_sweep(records, out / "layer_sweep.png")
    return markdown
