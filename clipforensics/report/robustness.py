"""Tables and figures of the robustness evaluation (studies/robustness.py): AUC against severity, over every
test video and with in-domain and unseen test videos apart.

The study writes one row per (run, copy, test group), the group in `test_group`: `all` is every test video (the
only rows of a report written before groups existed); `in-domain` and `unseen` pool the fakes the run trained on,
and those neither it nor its backbone trained on, against every test real; a manipulation's own rows (its fakes
against every test real) say in `test_group_kind` what it is to the run: in-domain, unseen or backbone-seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from clipforensics.measure.specs import LEVELS, MetricSpec, summary_specs
from clipforensics.report.figures import new_figure, save_figure
from clipforensics.data.provenance import BACKBONE_SEEN, IN_DOMAIN, UNSEEN
from clipforensics.report.reading import CHANCE
from clipforensics.report.summary import SEEN_MARK
from clipforensics.report.tables import Row, Table, ci_cell, direction_note, metric_header, one_line

CLEAN = "clean"  # the copy and kind of the unperturbed rows, as studies/robustness.py writes them
ALL_TEST = "all"  # the group of the rows over every test video
POOLED = (IN_DOMAIN, UNSEEN)
"""The pooled groups, drawn side by side: their group name is also their kind."""
PANEL_TITLES = {IN_DOMAIN: "in-domain", UNSEEN: "unseen (pooled)"}


def pooled_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows over every test video (a report written before groups existed: all its rows)."""
    return [r for r in rows if r.get("test_group", ALL_TEST) == ALL_TEST]


def has_groups(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows hold in-domain or unseen groups to draw apart."""
    return any(r.get("test_group") in POOLED for r in rows)


def _shown(rows: list[dict[str, Any]]) -> list[tuple[str, MetricSpec]]:
    """(level, spec) of every summary metric the rows carry: a report written before a metric was
    registered still folds in, without its column."""
    return [(level, spec) for level in LEVELS for spec in summary_specs()
            if any(f"{level}_{spec.name}" in r for r in rows)]


def robustness_table(rows: list[dict[str, Any]]) -> Table:
    """Every summary metric over every test video, one row per run and copy."""
    rows = pooled_rows(rows)
    shown = _shown(rows)
    cells = tuple(Row((one_line(r["run"]), r["copy"],
                       *(ci_cell(spec.format(r[f"{level}_{spec.name}"]), r[f"{level}_{spec.name}_ci"])
                         for level, spec in shown))) for r in rows)
    return Table(columns=("run", "test copy", *(metric_header(spec, level, True) for level, spec in shown)),
                 rows=cells, right=(False, False) + (True,) * len(shown),
                 note="Heads and LoRA runs as trained (no refit); test rows scored on each perturbed copy, validation rows clean "
                      "(the threshold a deployed detector carries). Intervals resample test videos. "
                      + direction_note([spec for _, spec in shown]))


def _auc_cell(row: dict[str, Any] | None, level: str) -> str:
    if row is None:
        return "–"
    return ci_cell(f"{row[f'{level}_auc']:.3f}", row.get(f"{level}_auc_ci"))


def _manipulation_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Each test manipulation that is not in-domain for some run, in the order the rows name them."""
    return list(dict.fromkeys(r["test_group"] for r in rows
                              if r.get("test_group", ALL_TEST) not in (ALL_TEST, *POOLED)
                              and r["test_group_kind"] != IN_DOMAIN))


def _manipulation_cell(row: dict[str, Any] | None, level: str) -> str:
    """A manipulation's AUC; blank where it is in-domain for the run (the in-domain column holds it)."""
    if row is None or row["test_group_kind"] == IN_DOMAIN:
        return ""
    return _auc_cell(row, level) + (SEEN_MARK if row["test_group_kind"] == BACKBONE_SEEN else "")


def _drop(groups: dict[str, dict[str, Any]], level: str) -> str:
    inside, outside = groups.get(IN_DOMAIN), groups.get(UNSEEN)
    return "–" if inside is None or outside is None else f"{outside[f'{level}_auc'] - inside[f'{level}_auc']:+.3f}"


def groups_table(rows: list[dict[str, Any]], level: str = "video") -> Table:
    """One row per run and copy: AUC over every test video, in-domain, unseen pooled, each other manipulation,
    and the drop (unseen − in-domain), with intervals."""
    by_copy: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_copy.setdefault((r["run"], r["copy"]), {})[r.get("test_group", ALL_TEST)] = r
    columns = _manipulation_columns(rows)
    body = []
    for (run, copy), groups in by_copy.items():
        inside = groups.get(IN_DOMAIN)
        body.append(Row((one_line(run), ", ".join(inside["fakes"]) if inside else "–", copy,
                         *(_auc_cell(groups.get(g), level) for g in (ALL_TEST, IN_DOMAIN, UNSEEN)),
                         *(_manipulation_cell(groups.get(m), level) for m in columns), _drop(groups, level))))
    header = ("run", "trained on", "test copy", f"all test {level} AUC", f"in-domain {level} AUC",
              f"unseen {level} AUC", *columns, "drop")
    return Table(columns=header, right=(False, False, False) + (True,) * (len(header) - 3), rows=tuple(body),
                 note=f"{level.capitalize()}-level AUC [95% bootstrap interval over test videos]; test rows scored on "
                      "each perturbed copy, validation rows clean. In-domain: every test real against the fakes "
                      "of the manipulations the run trained on; unseen: against the fakes of every manipulation "
                      "neither the run nor its backbone trained on, pooled; each manipulation column: against "
                      f"that manipulation's fakes. Drop = unseen − in-domain.{SEEN_MARK}: the backbone was tuned "
                      "on this manipulation, so it is not unseen and not pooled.")


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


def _kinds(rows: list[dict[str, Any]]) -> list[str]:
    """The perturbation kinds in the rows' order (clean alone where there are none)."""
    return list(dict.fromkeys(r["kind"] for r in rows if r["kind"] != CLEAN)) or [CLEAN]


def _draw_curves(ax: Axes, rows: list[dict[str, Any]], kind: str, level: str,
                 colours: dict[str, str] | None = None) -> None:
    """AUC against severity of `kind`, one curve per run with its interval band, clean at the left."""
    ticks, runs = panel_points(rows, kind)
    for run, points in runs.items():
        x = np.array([at for at, _ in points])
        line, = ax.plot(x, [p[f"{level}_auc"] for _, p in points], marker="o", label=run,
                        color=colours[run] if colours else None)
        cis = [p[f"{level}_auc_ci"] for _, p in points]
        if all(cis):
            ci = np.array(cis)
            ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.12)
    ax.set_xticks(np.arange(len(ticks)), ticks)
    ax.set(xlabel=f"{kind} (more severe →)", ylim=(0, 1.02))


def plot_robustness(rows: list[dict[str, Any]], out_png: Path, level: str = "video",
                    svg: bool = False) -> Path:
    """One panel per perturbation kind: AUC over every test video against severity, one curve per run."""
    rows = pooled_rows(rows)
    kinds = _kinds(rows)
    fig = new_figure(3.6 * len(kinds), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)[0])
    for ax, kind in zip(axes, kinds):
        _draw_curves(ax, rows, kind, level)
    axes[0].set_ylabel(f"{level} AUC")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{level} AUC vs perturbation severity (95% CI)")
    return save_figure(fig, out_png, svg)


def groups_figure(rows: list[dict[str, Any]], level: str = "video") -> Figure:
    """Per perturbation kind, in-domain and unseen (pooled) side by side on one y axis: AUC against severity,
    one curve per run in the same colour in every panel, chance dashed, the legend below the panels."""
    kinds = _kinds(rows)
    runs = list(dict.fromkeys(r["run"] for r in rows))
    colours = {run: f"C{i % 10}" for i, run in enumerate(runs)}
    fig = new_figure(7.6, 2.9 * len(kinds) + 0.4 + 0.22 * ((len(runs) + 2) // 3))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(kinds), len(POOLED), sharey=True, squeeze=False)
    for row_axes, kind in zip(axes, kinds):
        for ax, group in zip(row_axes, POOLED):
            ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=0.8)
            shown = [r for r in rows if r.get("test_group") == group]
            if shown:
                _draw_curves(ax, shown, kind, level, colours)
            else:
                ax.text(0.5, 0.5, f"no {group} test manipulation", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{PANEL_TITLES[group]}: {kind}", fontsize=10)
        row_axes[0].set_ylabel(f"{level} AUC")
    handles = [Line2D([], [], color=colours[run], marker="o") for run in runs]
    fig.legend(handles, runs, loc="outside lower center", ncol=min(3, len(runs)), fontsize=8)
    fig.suptitle(f"{level} AUC vs perturbation severity, in-domain and unseen apart (95% CI)", fontsize=11)
    return fig


def plot_groups(rows: list[dict[str, Any]], out_png: Path, level: str = "video", svg: bool = True) -> Path:
    """The in-domain / unseen curves (groups_figure) as PNG and, by default, SVG."""
    return save_figure(groups_figure(rows, level), out_png, svg)


GROUPS_CAPTION = "video AUC vs perturbation severity, in-domain and unseen test videos apart (95% CI)"
POOLED_CAPTION = "AUC vs perturbation severity over every test video, per perturbation kind (95% CI)"


def included_caption(rows: list[dict[str, Any]]) -> str:
    """The caption of a robustness folder's figure in the main report (report/included.py)."""
    return GROUPS_CAPTION if has_groups(rows) else POOLED_CAPTION


def included_table(rows: list[dict[str, Any]]) -> Table:
    """In-domain and unseen apart; a robustness report written before test groups: every test video."""
    return groups_table(rows) if has_groups(rows) else robustness_table(rows)


def plot_included_robustness(rows: list[dict[str, Any]], out_png: Path) -> Path:
    """The in-domain / unseen curves (PNG + SVG); for a report written before test groups, the pooled ones."""
    return plot_groups(rows, out_png) if has_groups(rows) else plot_robustness(rows, out_png, svg=True)
