"""Tables and figures of the comparisons (evaluate/compare.py): frames per video, paired differences,
threshold transfer, robustness. Cells are formatted once, here, for both Markdown and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipforensics.core.errors import UserError
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


def delong_cell(d: dict[str, Any]) -> str:
    """'z=1.23, p=0.219', or 'undefined (why)' where the test has no z (one video in a class, zero variance)."""
    if d.get("z") is None or d.get("p") is None:
        return f"undefined ({d.get('undefined', 'no variance')})"
    return f"z={d['z']:.2f}, p={d['p']:.3g}"


def paired_table(pairs: list[dict[str, Any]]) -> Table:
    rows = []
    for p in pairs:
        cells = [one_line(f"{p['a']} − {p['b']}")]
        for level in ("frame", "video"):
            e = p[level]
            cells.append(_ci(e["diff"], e.get("diff_ci")))
            cells.append("yes" if e.get("distinguishable") else "no" if "distinguishable" in e else "–")
        cells.append(delong_cell(p["video"]["delong"]))
        rows.append(Row(tuple(cells)))
    return Table(columns=("pair", "Δ frame AUC [95% CI]", "frame CI excludes 0", "Δ video AUC [95% CI]",
                          "video CI excludes 0", "DeLong (video)"), rows=tuple(rows),
                 right=(False, True, False, True, False, True),
                 note="Paired bootstrap: each resample draws the same videos (within class) for both runs. DeLong's "
                      "test at video level only, where units are independent; frames of a video are not.")


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error), in the given order; an undefined p (None) stays
    None and is not counted in the family."""
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * p))
        adjusted[i] = running
    return adjusted


def _flip(e: dict[str, Any]) -> dict[str, Any]:
    """A level's paired result read the other way round (b − a): differences and z negated, interval mirrored."""
    out = {**e, "diff": -e["diff"]}
    if e.get("diff_ci"):
        out["diff_ci"] = [-e["diff_ci"][1], -e["diff_ci"][0]]
    if isinstance(e.get("delong"), dict) and e["delong"].get("z") is not None:
        out["delong"] = {**e["delong"], "z": -e["delong"]["z"], "diff": -e["delong"].get("diff", 0.0)}
    return out


def against_reference(pairs: list[dict[str, Any]], reference: str, all_pairs: bool = False) -> list[dict[str, Any]]:
    """The pairs the report tests: each run against `reference` (read run − reference), or every pair with
    `all_pairs`; each with `p_holm`, the video-level DeLong p adjusted (Holm) over exactly that family."""
    names = {p["a"] for p in pairs} | {p["b"] for p in pairs}
    if reference not in names:
        raise UserError(f"--compare-to {reference}: no such run in this report; runs: {', '.join(sorted(names))}")
    chosen = []
    for p in pairs:
        if all_pairs:
            chosen.append(p)
        elif reference in (p["a"], p["b"]):
            flip = p["a"] == reference
            chosen.append({"a": p["b"], "b": p["a"], "frame": _flip(p["frame"]), "video": _flip(p["video"])}
                          if flip else p)
    adjusted = holm([p["video"]["delong"].get("p") for p in chosen])
    return [{**p, "p_holm": q} for p, q in zip(chosen, adjusted)]


def comparison_table(compared: list[dict[str, Any]], reference: str | None) -> Table:
    """The paired table with a Holm-adjusted p column: against one reference, or all pairs."""
    base = paired_table(compared)
    rows = tuple(Row((*row.cells, "–" if p["p_holm"] is None else f"{p['p_holm']:.3g}"))
                 for row, p in zip(base.rows, compared))
    family = f"the {len(compared)} comparisons with {reference}" if reference else f"all {len(compared)} pairs"
    return Table(columns=(*base.columns, "Holm p (video)"), rows=rows, right=(*base.right, True),
                 note=f"{base.note} Holm's adjustment over {family} controls the chance of any false 'different' "
                      "at 5% when Holm p < 0.05.")


def transfer_table(transfer: dict[str, dict[str, Any]]) -> Table:
    rules = ("val", "fixed 0.5", "test oracle")
    rows = tuple(Row((one_line(name), *(f"{num(t[level][r]['accuracy'])} @ {t[level][r]['threshold']:.3g}"
                                        for level in ("frame", "video") for r in rules)))
                 for name, t in transfer.items())
    columns = ("run", *(f"{level} acc, {r} threshold" for level in ("frame", "video") for r in rules))
    return Table(columns=columns, rows=rows, right=(False,) + (True,) * 6,
                 warning="The test-oracle threshold is chosen on test labels: an optimistic bound, never a result. "
                         "Only the validation threshold gives a reportable accuracy.")


def plot_frames(fpv: dict[str, list[dict[str, Any]]], out_png: Path, reference: str | None = None,
                svg: bool = False) -> Path:
    """Video AUC against frames per test video, one line per run; the interval band of the reference run only
    (the first without one), so bands do not pile up."""
    reference = reference if reference in fpv else next(iter(fpv))
    fig = new_figure(7.5, 3.8)
    ax = fig.subplots()
    for name, rows in fpv.items():
        x = np.arange(len(rows))
        auc = [r["video_auc"] for r in rows]
        line, = ax.plot(x, auc, marker="o", label=name, linewidth=2.2 if name == reference else 1.2)
        if name == reference and all(r["video_auc_ci"] for r in rows):
            ci = np.array([r["video_auc_ci"] for r in rows])
            ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.12)
    ax.set_xticks(np.arange(len(rows)), [str(r["frames"]) for r in rows])
    ax.set(xlabel="frames used per test video", ylabel="video AUC", ylim=(0, 1.02),
           title=f"video AUC vs frames per video (band: 95% CI of {reference})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    return save_figure(fig, out_png, svg)
