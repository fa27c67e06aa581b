"""The sections of report.html (report/build.py puts them in order): each draws its figures into the report
folder and returns a `Section` of HTML blocks. The reference run's figures are shown; every other run's are one
click away in a <details> block, so a report of nine runs stays readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipforensics.core.errors import UserError
from clipforensics.data.provenance import TunedTower
from clipforensics.measure.result import RunResult
from clipforensics.report.content import ReportContent
from clipforensics.report.comparisons import (against_reference, comparison_table, frames_table, plot_frames,
                                              transfer_table)
from clipforensics.report.curves import plot_calibration, plot_curves, plot_scores
from clipforensics.report.embedding import plot_embedding
from clipforensics.report.errors import error_analysis, safe_name
from clipforensics.report.figures import plot_confusion, plot_roc
from clipforensics.report.html import (Section, details_block, figure_block, lines_block, links_block, paragraph,
                                       table_block)
from clipforensics.report.included import Folded
from clipforensics.report.latex import write_table_files
from clipforensics.report.provenance import provenance_table
from clipforensics.report.reading import reading, result_cells, run_towers, short_reading
from clipforensics.report.summary import summary_rows, summary_table
from clipforensics.report.tables import Table, results_table

FIGURES, TABLES = "figures", "tables"


def _figure(caption: str, png: Path, out: Path) -> str:
    """A figure block linking its SVG twin (relative to report.html)."""
    svg = png.with_suffix(".svg")
    return figure_block(caption, png, [svg], root=out)


def _tables(table: Table, out: Path, stem: str, caption: str) -> str:
    """The table on the page, its CSV and LaTeX written under tables/ and linked under it."""
    files = write_table_files(table, out / TABLES, stem, caption)
    return table_block(table) + links_block("this table as", files, root=out)


def answer(content: "ReportContent", out: Path) -> Section:
    """The question first: one row per run (video level, intervals), the reading, frame level one click away."""
    video = summary_table(summary_rows(content.metrics, "video"), "video")
    frame = summary_table(summary_rows(content.metrics, "frame"), "frame")
    return Section("In-domain against unseen", (
        paragraph("Reading (video AUC, 95% intervals; a drop is called only where the intervals separate):"),
        lines_block(short_reading(content.metrics)),
        details_block("Full reading, per manipulation", [lines_block(reading(content.metrics))]),
        _tables(video, out, "summary_video", "In-domain against unseen manipulations, video-level AUC"),
        details_block("Frame level", [_tables(frame, out, "summary_frame",
                                              "In-domain against unseen manipulations, frame-level AUC")])))


def matrices(folded: list[Folded], out: Path) -> list[Section]:
    """Each included generalisation matrix: heatmap (diverging, centred on chance) and its table with intervals."""
    return [Section(f.title, (_figure(f.caption, f.figure, out),
                              _tables(f.table, out, f.figure.stem, f.title)))
            for f in folded if f.kind == "matrix"]


def analyses(folded: list[Folded], out: Path) -> list[Section]:
    """Every other included analysis (layer sweep, robustness): its table (with CSV and LaTeX) and figure under its
    own heading."""
    return [Section(f.title, (_tables(f.table, out, f.figure.stem, f.title), _figure(f.caption, f.figure, out)))
            for f in folded if f.kind != "matrix"]


def all_results(content: "ReportContent", towers: dict[str, TunedTower]) -> Section:
    table = results_table(content.results, towers=towers)
    return Section("All metrics", (details_block(f"Every metric per run and test manipulation ({len(table.rows)} "
                                                 "rows)", [table_block(table)]),))


def _kinds(content: "ReportContent", run: RunResult, towers: dict[str, TunedTower]) -> dict[str, str]:
    record = content.metrics["runs"][run.name]
    return {m: kind for m, (kind, _) in result_cells(run.name, record, "video", towers.get(run.name)).items()}


def _by_reference(content: "ReportContent", draw: Any, label: str) -> tuple[str, ...]:
    """The reference run's figure shown, each other run's folded under its name."""
    blocks = []
    for run in content.results:
        block = draw(run)
        blocks.append(block if run.name == content.reference else details_block(f"{label}: {run.name}", [block]))
    return tuple(blocks)


def curves(content: "ReportContent", out: Path) -> Section:
    towers = run_towers(content.metrics)

    def draw(run: RunResult) -> str:
        png = plot_curves(run, _kinds(content, run, towers), out / FIGURES / f"curves_{safe_name(run.name)}.png")
        return _figure(f"ROC and precision-recall per test manipulation: {run.name}", png, out)

    return Section("ROC and precision-recall per manipulation", _by_reference(content, draw, "curves"))


def scores(content: "ReportContent", out: Path) -> Section:
    def draw(run: RunResult) -> str:
        png = plot_scores(run, out / FIGURES / f"scores_{safe_name(run.name)}.png")
        return _figure(f"score histograms and metrics against the threshold: {run.name}", png, out)

    calibration = plot_calibration(content.results, out / FIGURES / "calibration.png")
    return Section("Scores, thresholds and calibration", (
        *_by_reference(content, draw, "scores"),
        _figure("reliability diagram (a score is a probability only where its curve follows the diagonal)",
                calibration, out)))


def comparison_tables(content: "ReportContent", out: Path) -> list[Table]:
    """Paired tests against the reference (Holm-adjusted; all pairs with all_pairs), threshold transfer, frames
    per video; the tested family into metrics.json under `comparison`."""
    metrics, options = content.metrics, content.options
    names = [r.name for r in content.results]
    if options.compare_to and options.compare_to not in names:
        raise UserError(f"--compare-to {options.compare_to}: no such run; runs: {', '.join(names)}")
    tables = []
    if metrics.get("paired"):
        compared = against_reference(metrics["paired"], content.reference, options.all_pairs)
        metrics["comparison"] = {"reference": None if options.all_pairs else content.reference,
                                 "pairs": [{"a": p["a"], "b": p["b"], "video_diff": p["video"]["diff"],
                                            "p": p["video"]["delong"].get("p"), "p_holm": p["p_holm"]}
                                           for p in compared]}
        tables.append(comparison_table(compared, None if options.all_pairs else content.reference))
    tables.append(transfer_table({n: metrics["runs"][n]["threshold_transfer"] for n in names}))
    if metrics.get("frames_per_video"):
        tables.append(frames_table(metrics["frames_per_video"]))
    return tables


def comparisons(content: "ReportContent", tables: list[Table], out: Path) -> Section:
    agg = content.options.video_agg
    blocks = [table_block(t) for t in tables]
    if content.metrics.get("frames_per_video"):
        png = plot_frames(content.metrics["frames_per_video"], out / "frames_per_video.png", content.reference, True)
        blocks.append(_figure("video AUC vs frames per video", png, out))
    for level, caption in (("frame", "ROC, frame level"), ("video", "ROC, video level")):
        blocks.append(_figure(f"{caption}, all test manipulations pooled",
                              plot_roc(content.results, out / f"roc_{level}.png", level, agg, True), out))
    return Section("Comparisons", tuple(blocks))


def embedding(content: "ReportContent", out: Path) -> list[Section]:
    """The PCA map of the first cache that is still there (none when every cache is gone)."""
    caches = [c["path"] for c in content.metrics["provenance"].get("caches") or () if "missing" not in c]
    if not caches or not content.tables:
        return []
    png = plot_embedding(caches[0], content.tables[0], out / FIGURES / "embedding.png")
    return [Section("Embedding map", (_figure(f"PCA of {caches[0]}, by manipulation and by split", png, out),))]


def per_run(content: "ReportContent", out: Path) -> Section:
    """Each run folded: its threshold, confusion matrices and most confident errors."""
    blocks = []
    for run in content.results:
        stem = safe_name(run.name)
        confusion = plot_confusion(run, out / f"confusion_{stem}.png", svg=True)
        errors = error_analysis(run, out, top_k=content.options.top_k)
        blocks.append(details_block(run.name, [
            paragraph(f"threshold {run.threshold:.4g} ({run.threshold_note}); video score = {run.video_agg} of "
                      "frame scores"),
            _figure(f"confusion matrices: {run.name}", confusion, out),
            figure_block(f"most confident errors: {run.name}", Path(errors["png"])),
            links_block("worst videos", [Path(errors["csv"])], root=out)]))
    return Section("Per-run details", tuple(blocks))


def provenance_block(content: "ReportContent") -> str:
    return table_block(provenance_table(content.metrics["provenance"]))
