"""Result tables as data: rows of cells built once, then rendered to Markdown and to HTML.

A `Table` holds already formatted cells plus the notes that go under it; `to_markdown` and
`to_html` only lay those out, so the two renderings always show the same numbers. New tables
(another breakdown, a comparison) are new builders returning a `Table`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any, Iterator, Mapping

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.provenance import TunedTower
from clipforensics.measure.metrics import FEW_VIDEOS
from clipforensics.measure.result import RunResult
from clipforensics.measure.specs import LEVELS, MetricSpec, specs

SUB_ROW = "↳ "
BACKBONE_SAW = "backbone saw"
"""Marks a test-set cell whose manipulation the scorer's tower was tuned on: not an unseen manipulation."""
DECISION_LEVELS = ("frame", "video")
DECISION_COLUMNS = ("acc", "F1", "bal. acc")


@dataclass(frozen=True)
class Row:
    """One table row; `sub` marks a breakdown of the row above it (indented in HTML)."""

    cells: tuple[str, ...]
    sub: bool = False


@dataclass(frozen=True)
class Table:
    """Formatted cells and what is said under them: a note, one bullet per item, a warning."""

    columns: tuple[str, ...]
    right: tuple[bool, ...]
    rows: tuple[Row, ...]
    note: str = ""
    items: tuple[str, ...] = ()
    warning: str = ""


# ---------------------------------------------------------------------------- cell formats

def num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.3f}"


def ci_cell(point: str, ci: Any) -> str:
    """'0.912 [0.85, 0.96]': interval bounds with two decimals, as wide intervals deserve."""
    return f"{point} [{float(ci[0]):.2f}, {float(ci[1]):.2f}]" if ci else point


def metric_header(spec: MetricSpec, level: str, ci: bool) -> str:
    return f"{level} {spec.label}" + (" [95% CI]" if ci else "")


def direction_note(shown: list[MetricSpec]) -> str:
    """Which way is better, for each metric in a table, from the registry."""
    higher = ", ".join(dict.fromkeys(s.label for s in shown if s.higher_is_better))
    lower = ", ".join(dict.fromkeys(s.label for s in shown if not s.higher_is_better))
    return " ".join(part for part in (f"Higher is better: {higher}." if higher else "",
                                      f"Lower is better: {lower}." if lower else "") if part)


def one_line(text: Any) -> str:
    """A newline inside a name or note would end its Markdown block early."""
    return " ".join(str(text).splitlines())


# ---------------------------------------------------------------------------- the results table

def _table_metrics() -> list[tuple[str, MetricSpec]]:
    """(level, spec) of every metric column of the results table: frame ones, then video ones."""
    return [(level, spec) for level in LEVELS for spec in specs() if level in spec.table_levels]


def result_columns() -> tuple[str, ...]:
    """The results table's header: run, test set, the registered metrics, decisions, video counts."""
    return ("run", "test set", *(metric_header(spec, level, spec.table_ci) for level, spec in _table_metrics()),
            *DECISION_COLUMNS, "n videos real/fake")


def _result_cells(run_cell: str, test_set: str, result: dict, decision_level: str) -> tuple[str, ...]:
    decision, video = result[decision_level], result["video"]
    metric_cells = (ci_cell(spec.format(result[level].get(spec.name)), spec.table_ci and
                            result[level].get(f"{spec.name}_ci")) for level, spec in _table_metrics())
    return (
        one_line(run_cell), test_set, *metric_cells,
        num(decision.get("accuracy")), num(decision.get("f1")), num(decision.get("balanced_accuracy")),
        f"{video.get('n_real', '?')}/{video.get('n_fake', '?')}",
    )


def _run_results(run: RunResult, tower: TunedTower | None = None) -> Iterator[tuple[str, str, dict]]:
    """(run cell, test set, metrics): the overall result, then all reals against each test manipulation; a cell
    the tower was tuned on (the overall one when it holds such a manipulation) says so."""
    saw = [m for m in run.per_manipulation if tower is not None and tower.saw(m)]
    mark = f" ({BACKBONE_SAW} {', '.join(saw)})" if saw else ""
    yield run.name, f"all{mark}", run.metrics
    for manip, result in run.per_manipulation.items():
        yield "", f"{SUB_ROW}{manip}" + (f" ({BACKBONE_SAW})" if manip in saw else ""), result


def tower_items(runs: list[RunResult], towers: Mapping[str, TunedTower]) -> tuple[str, ...]:
    """One line per run whose tower was tuned beyond what the run trained on: what, and that it is not unseen."""
    return tuple(f"{one_line(run.name)}: {one_line(towers[run.name].describe())}; cells marked '{BACKBONE_SAW}' "
                 "are not unseen manipulations" for run in runs if run.name in towers)


def _small_class_warning(counts: list[tuple[int, int]]) -> str:
    """One line when any row has fewer than FEW_VIDEOS videos in a class: its intervals are wide."""
    small = [(r, f) for r, f in counts if min(r, f) < FEW_VIDEOS]
    if not small:
        return ""
    fewest = f"{min(r for r, _ in small)} real, {min(f for _, f in small)} fake"
    return (f"Warning: {len(small)} of {len(counts)} rows have fewer than {FEW_VIDEOS} test videos "
            f"in a class (fewest: {fewest}); intervals are wide.")


def results_table(runs: list[RunResult], decision_level: str = "frame",
                  towers: Mapping[str, TunedTower] | None = None) -> Table:
    """One table for all runs, so scorers compare at a glance; thresholds and warnings under it.

    acc / F1 / bal. acc are at each run's threshold, on frames (default) or videos (`decision_level`).
    `towers` (run name -> tuned tower, report.reading.run_towers) marks the cells a run's backbone was tuned on.
    """
    towers = towers or {}
    if not runs:
        raise UserError("report: no runs to tabulate")
    if decision_level not in DECISION_LEVELS:
        raise UserError(f"decision_level must be 'frame' or 'video', got {decision_level!r}")
    rows, counts = [], []
    for run in runs:
        for run_cell, test_set, result in _run_results(run, towers.get(run.name)):
            rows.append(Row(_result_cells(run_cell, test_set, result, decision_level), sub=not run_cell))
            counts.append((int(result["video"].get("n_real", 0)), int(result["video"].get("n_fake", 0))))
    items = tuple(f"{one_line(run.name)}: threshold {run.threshold:.4g} ({one_line(run.threshold_note)}); "
                  f"video score = {run.video_agg} of frame scores" for run in runs) + tower_items(runs, towers)
    columns = result_columns()
    return Table(columns=columns, right=(False, False) + (True,) * (len(columns) - 2),
                 rows=tuple(rows), items=items, warning=_small_class_warning(counts),
                 note=f"acc, F1 and bal. acc are {decision_level}-level at each run's threshold; "
                      "CIs resample whole videos within each class. "
                      + direction_note([spec for _, spec in _table_metrics()]))


def frame_table(df: pd.DataFrame) -> Table:
    """Any DataFrame as a table: floats with three decimals, numeric columns right-aligned."""
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    rows = tuple(Row(cells, sub=not cells[0]) for cells in
                 (tuple(cell(v) for v in row) for row in df.itertuples(index=False)))
    return Table(columns=tuple(str(c) for c in df.columns), rows=rows,
                 right=tuple(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns))


# ---------------------------------------------------------------------------- renderings

def _blocks(table: Table, grid: str, note: str, items: str, warning: str) -> list[str]:
    return [grid] + [part for text, part in ((table.note, note), (table.items, items), (table.warning, warning))
                     if text]


def to_markdown(table: Table) -> str:
    """A pipe table (pipes in cells escaped), then note, bullets and warning as paragraphs."""
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(one_line(c).replace("|", "\\|") for c in cells) + " |"

    grid = "\n".join([line(table.columns), line(tuple("---:" if r else "---" for r in table.right))]
                     + [line(row.cells) for row in table.rows])
    items = "\n".join(f"- {item}" for item in table.items)
    return "\n\n".join(_blocks(table, grid, table.note, items, table.warning)) + "\n"


def to_html(table: Table) -> str:
    """The same rows as an escaped HTML table, then note, bullets and (highlighted) warning."""
    align = ["right" if r else "left" for r in table.right]

    def cells(tag: str, row: tuple[str, ...]) -> str:
        return "".join(f'<{tag} style="text-align:{a}">{escape(c)}</{tag}>' for c, a in zip(row, align))

    body = "".join(f'<tr class="{"sub" if row.sub else "run"}">{cells("td", row.cells)}</tr>' for row in table.rows)
    grid = f"<table><thead><tr>{cells('th', table.columns)}</tr></thead><tbody>{body}</tbody></table>"
    items = "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in table.items) + "</ul>"
    return "\n".join(_blocks(table, grid, f"<p>{escape(table.note)}</p>", items,
                             f'<p class="warning">{escape(table.warning)}</p>'))
