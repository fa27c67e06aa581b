"""report.html, research question first: what the runs say about unseen manipulations, then the matrix, then
the curves, comparisons, folded-in analyses, per-run details and provenance, each section headed and listed in
the table of contents.

The evaluator measures (metrics, paired tests, threshold transfer, frames per video) and hands them over in
`metrics`; everything here only draws and lays out those numbers. New outputs (the SVG of each figure, LaTeX
and CSV of the main tables) go into `figures/` and `tables/` beside report.html.
"""

from __future__ import annotations

from pathlib import Path

from clipforensics.core.io import write_json, write_text
from clipforensics.measure.result import RunResult
from clipforensics.report import sections
from clipforensics.report.content import ReportContent
from clipforensics.report.sections import FIGURES, TABLES
from clipforensics.report.html import Section, metrics_block, write_page
from clipforensics.report.included import Included, fold_in
from clipforensics.report.provenance import provenance_line
from clipforensics.report.summary import summary_rows, summary_table
from clipforensics.report.tables import results_table, to_markdown
from clipforensics.report.errors import safe_name
from clipforensics.report.reading import run_towers

TOP_FIGURES = ("roc_frame", "roc_video", "frames_per_video")
STATIC_FILES = ("metrics.json", "metrics.md", "report.html", FIGURES, TABLES,
                *(f"{stem}.{ext}" for stem in TOP_FIGURES for ext in ("png", "svg")))


def owned_files(results: list[RunResult], included: list[Included]) -> list[str]:
    """Every top-level entry the report writes, to claim before writing (a user's file of such a name is refused,
    never overwritten)."""
    per_run = [f"{kind}_{safe_name(r.name)}.{ext}" for r in results
               for kind, ext in (("confusion", "png"), ("confusion", "svg"), ("errors", "csv"), ("errors", "png"))]
    folded = [name for item in included for name in (item.figure, str(Path(item.figure).with_suffix(".svg")))]
    return [*STATIC_FILES, *per_run, *folded]


def _summaries(content: ReportContent) -> None:
    """The summary rows at both levels into metrics.json (added under `summary`)."""
    content.metrics["summary"] = {level: [row.record() for row in summary_rows(content.metrics, level)]
                                  for level in ("video", "frame")}


def write_report(content: ReportContent, out: Path) -> str:
    """metrics.json, metrics.md, the figures and tables, and report.html in `out`; returns the printed tables."""
    (out / FIGURES).mkdir(exist_ok=True)
    (out / TABLES).mkdir(exist_ok=True)
    _summaries(content)
    folded = fold_in(content.included, content.metrics, out)
    comparison = sections.comparison_tables(content, out)
    write_json(out / "metrics.json", content.metrics)
    towers = run_towers(content.metrics)
    summary = summary_table(summary_rows(content.metrics, "video"), "video")
    printed = "\n".join(to_markdown(t) for t in (summary, results_table(content.results, towers=towers),
                                                   *comparison, *(f.table for f in folded)))
    write_text(out / "metrics.md", printed + "\n")
    page = [sections.answer(content, out), *sections.matrices(folded, out),
            sections.all_results(content, towers), sections.curves(content, out),
            sections.scores(content, out), sections.comparisons(content, comparison, out),
            *sections.analyses(folded, out), *sections.embedding(content, out), sections.per_run(content, out),
            Section("Provenance", (sections.provenance_block(content), metrics_block(content.metrics)))]
    write_page(out / "report.html", "clipforensics report", [s for s in page if s.blocks],
               lead=provenance_line(content.metrics["provenance"]))
    return printed
