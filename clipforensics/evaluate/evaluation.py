"""One evaluator for every scorer: scores tables in, metrics, tables, plots and a report out.

Thresholds come from validation rows only; test rows are only ever measured.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd

from clipforensics import __version__
from clipforensics.core.identity import claim
from clipforensics.core.io import OutputDir, claim_output, staged_install
from clipforensics.core.errors import UserError
from clipforensics.data.manifest import KNOWN_MANIPULATIONS
from clipforensics.measure.metrics import (AGGREGATORS, FEW_VIDEOS, THRESHOLD_RULES, choose_threshold, evaluate_split,
                                            per_manipulation)
from clipforensics.evaluate.settings import EvaluateSettings, MeasureSettings
from clipforensics.evaluate.compare import (frames_per_video, paired_comparisons, parse_counts,
                                            threshold_transfer)
from clipforensics.measure.result import RunResult
from clipforensics.report.build import owned_files, write_report
from clipforensics.report.content import ReportContent, ReportOptions
from clipforensics.report.included import Included, read_included
from clipforensics.report.provenance import provenance
from clipforensics.data.scores import DATASET, read_scores, read_settings
from clipforensics.core.settings import to_dict


def _run_name(path: Path, settings: dict[str, Any], taken: set[str]) -> str:
    name = settings.get("name") or (path.parent.name if path.name == "scores.csv" else path.stem)
    base, i = name, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def check_no_leak(df: pd.DataFrame, name: str) -> None:
    """A video scored in training rows and in test rows means the test is contaminated."""
    splits = df.groupby("video")["split"].agg(lambda s: frozenset(s))
    leaked = splits[splits.map(lambda s: "test" in s and len(s) > 1)]
    if len(leaked):
        raise UserError(f"{name}: video {leaked.index[0]} appears in both {'/'.join(sorted(leaked.iloc[0]))} "
                        f"rows ({len(leaked)} such videos): the test set leaks")


def load_run(path: Path, settings: EvaluateSettings, taken: set[str], external: bool) -> tuple[str, pd.DataFrame,
                                                                                               dict[str, Any]]:
    meta = {} if external else read_settings(path)
    class_names = list(settings.real_classes) + list(KNOWN_MANIPULATIONS)
    df = read_scores(path, class_names=class_names, video_pattern=settings.video_pattern,
                     real_classes=tuple(settings.real_classes))
    return _run_name(path, meta, taken), df, meta


def evaluate_run(name: str, df: pd.DataFrame, measure: MeasureSettings, data_root: str | None = None) -> RunResult:
    """The one path from a scores table to metrics: no leak, threshold from validation rows, test rows measured.

    Overall, and all reals against each test manipulation when there are several.
    """
    check_no_leak(df, name)
    threshold, note = choose_threshold(df, measure.threshold_rule)
    test = df[df["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise UserError(f"{name}: no test rows to evaluate")
    kw = dict(threshold=threshold, video_agg=measure.video_agg, n_boot=measure.bootstrap,
              seed=measure.bootstrap_seed)
    metrics = evaluate_split(test, **kw)
    manip = per_manipulation(test, **kw) if test.loc[test.label == 1, "manipulation"].nunique() > 1 else {}
    return RunResult(name=name, scores=test, threshold=threshold, threshold_note=note, metrics=metrics,
                     per_manipulation=manip, data_root=data_root)


def split_datasets(name: str, df: pd.DataFrame) -> list[tuple[str, str | None, pd.DataFrame]]:
    """(result name, data set, table) per data set tested, each with the validation rows that set the threshold.

    A run tested on other data sets (a `dataset` column with several values) is one result per data set,
    named `run@dataset`, the training data set first; its validation rows (all of one data set) give every
    result the same threshold. A table of one data set is one result under the run's own name.
    """
    if DATASET not in df.columns or df[DATASET].nunique() <= 1:
        return [(name, None, df.drop(columns=[DATASET], errors="ignore"))]
    selection = df[df["split"] != "test"]
    trained = list(dict.fromkeys(selection[DATASET]))
    if len(trained) > 1:
        raise UserError(f"{name}: validation rows come from several data sets ({', '.join(trained)}); "
                        "a run selects and sets its threshold on one")
    order = trained + [d for d in dict.fromkeys(df[DATASET]) if d not in trained]
    results = []
    for dataset in order:
        test = df[(df["split"] == "test") & (df[DATASET] == dataset)]
        if len(test):
            table = pd.concat([selection, test], ignore_index=True).drop(columns=[DATASET])
            results.append((f"{name}@{dataset}", dataset, table))
    return results


def dataset_root(meta: dict[str, Any], dataset: str | None, given: str | None = None) -> str | None:
    """Where the frames of one data set of a run live: a test set's recorded data root, else the run's own
    (`given`, the --data-root option, overrides the run's own only)."""
    for test_set in meta.get("test_sets") or ():
        if test_set.get("name") == dataset:
            return test_set.get("data_root")
    return given or meta.get("data_root")


def print_notes(results: list[tuple[RunResult, bool]]) -> None:
    """Say on stderr what weakens a result: a fixed threshold (per run), classes too small for tight intervals
    (one line naming every run they weaken, not one per run). `results`: each run and whether it had a val split."""
    small: dict[tuple[str, int], list[str]] = {}
    for result, has_val in results:
        if not has_val:
            print(f"warning: {result.name}: {result.threshold_note}", file=sys.stderr)
        video = result.metrics["video"]
        for cls, n in (("real", video["n_real"]), ("fake", video["n_fake"])):
            if n < FEW_VIDEOS:
                small.setdefault((cls, n), []).append(result.name)
    for (cls, n), names in small.items():
        print(f"note: {', '.join(names)}: only {n} {cls} test videos: the 95% intervals are wide", file=sys.stderr)


def _same_test_set(runs: list[tuple[str, pd.DataFrame, dict, str | None]]) -> None:
    """Runs compared in one report must have been scored on the very same test frames (per data set)."""
    first: dict[str | None, tuple[str, set[str]]] = {}
    for name, df, _, dataset in runs:
        paths = set(df.loc[df.split == "test", "path"])
        first_name, reference = first.setdefault(dataset, (name, paths))
        if paths != reference:
            raise UserError(f"{name} and {first_name} were scored on different test sets (other cache or "
                            "protocol); evaluate them in separate reports")


MIN_BOOTSTRAP = 100
"""Fewer resamples give 2.5 / 97.5 % quantiles that are mostly noise (with 1 the interval need not
even contain the estimate)."""


def check_measure(settings: MeasureSettings) -> None:
    """The options every measuring command shares (report, matrix, robustness, methods), checked the same way."""
    AGGREGATORS.require(settings.video_agg, "--video-agg")  # argparse checks them too; settings built without it
    THRESHOLD_RULES.require(settings.threshold_rule, "--threshold-rule")
    if settings.bootstrap != 0 and settings.bootstrap < MIN_BOOTSTRAP:
        raise UserError(f"--bootstrap must be 0 (no intervals) or at least {MIN_BOOTSTRAP}, got {settings.bootstrap}")


def check_settings(settings: EvaluateSettings) -> None:
    check_measure(settings)
    if settings.top_k < 0:
        raise UserError(f"--top-k must be 0 or more, got {settings.top_k}")
    parse_counts(settings.frame_budgets)  # a bad budget is refused before any run is measured


def report_inputs(files: list[tuple[Path, bool]], settings: EvaluateSettings) -> dict[str, Any]:
    """What a report is of: its scores files, prediction files and folded-in analyses, by absolute path. A rerun
    on the same inputs replaces the report (other options may change); a report of other inputs is refused."""
    return {"scores": sorted(str(p.resolve()) for p, external in files if not external),
            "predictions": sorted(str(p.resolve()) for p, external in files if external),
            "include": sorted(str(Path(d).resolve()) for d in settings.include)}


def claim_report(settings: EvaluateSettings, files: list[tuple[Path, bool]]) -> OutputDir:
    """The report folder, checked before any work: a report of other scores files is refused, naming its runs,
    unless --overwrite; the new report is staged and replaces the old one in one step (`write_outputs`)."""
    report = claim_output(settings.out, stage="evaluate", inputs=[*(("scores file", p) for p, _ in files),
                                                                  *(("--include", d) for d in settings.include)])
    old = report.read_record("metrics.json")
    if old is not None:
        runs = ", ".join(old.get("runs") or ()) or "no runs"
        claim(old.get("inputs") or {}, report_inputs(files, settings), f"{report.path} (the report of {runs})",
              overwrite=settings.overwrite, replace=lambda: None, made_with="other scores files")
    return report


def evaluate(score_files: list[str], settings: EvaluateSettings) -> dict[str, Any]:
    files = [(Path(f), False) for f in score_files] + [(Path(f), True) for f in settings.predictions]
    if not files:
        raise UserError("give scores files (runs/NAME/HEAD/scores.csv) or --predictions FILE")
    check_settings(settings)
    for path, _ in files:
        if not path.is_file():
            what = "is a folder, not a scores file" if path.is_dir() else "not found"
            raise UserError(f"scores file {path} {what}")
    taken: set[str] = set()
    loaded = []
    for path, external in files:
        loaded.append(load_run(path, settings, taken, external))
        taken.add(loaded[-1][0])
    expanded = [(result_name, table, meta, dataset) for name, df, meta in loaded
                for result_name, dataset, table in split_datasets(name, df)]
    _same_test_set(expanded)
    included = read_included(settings.include)
    report = claim_report(settings, files)
    results = []
    for name, df, meta, dataset in expanded:
        results.append(evaluate_run(name, df, settings, dataset_root(meta, dataset, settings.data_root)))
        results[-1].dataset = dataset
    print_notes([(result, (df["split"] == "val").any()) for result, (_, df, _, _) in zip(results, expanded)])
    return write_outputs(results, [(name, df, meta) for name, df, meta, _ in expanded], settings, report, included,
                         report_inputs(files, settings))


def comparisons(results: list[RunResult], settings: EvaluateSettings, metrics: dict[str, Any]) -> None:
    """Threshold transfer per run, paired differences of every pair, video AUC vs frames per video, into `metrics`
    (the report draws them: report/sections.py)."""
    for r in results:
        metrics["runs"][r.name]["threshold_transfer"] = threshold_transfer(r)
    pairs = paired_comparisons(results, settings.bootstrap, settings.bootstrap_seed) if len(results) > 1 else []
    if pairs:
        metrics["paired"] = pairs
    if settings.frame_budgets:
        counts = parse_counts(settings.frame_budgets)
        metrics["frames_per_video"] = {r.name: frames_per_video(r, counts, settings.bootstrap, settings.bootstrap_seed)
                                       for r in results}


def write_outputs(results: list[RunResult], loaded: list, settings: EvaluateSettings, report_dir: OutputDir,
                  included: list[Included] = (), inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report, written into a staged folder that replaces the old report in one step: a killed rerun leaves
    the old report whole, never new metrics beside an old page; foreign files in the folder are kept."""
    report_dir.own()  # a new folder is created and locked here
    report_dir.refuse_taken(*owned_files(results, included))  # a user's file of one of these names is refused
    with staged_install(report_dir) as out:
        metrics, table = _write_report(results, loaded, settings, out, included, inputs)
    if settings.print_tables:
        print(table)
    print(f"report: {report_dir.path / 'report.html'}")
    return metrics


def _write_report(results: list[RunResult], loaded: list, settings: EvaluateSettings, out: Path,
                  included: list[Included], inputs: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    metas = [meta for _, _, meta in loaded]
    prov = provenance([m["cache"] for m in metas if m.get("cache")],
                      next((m["protocol"] for m in metas if m.get("protocol")), None), [df for _, df, _ in loaded])
    metrics = {
        "provenance": prov, "settings": to_dict(settings), "package_version": __version__, "inputs": inputs or {},
        "runs": {r.name: {"threshold": r.threshold, "threshold_note": r.threshold_note, "test": r.metrics,
                          "per_manipulation": r.per_manipulation, "source": meta}
                 for r, (_, _, meta) in zip(results, loaded)},
    }
    comparisons(results, settings, metrics)
    options = ReportOptions(settings.video_agg, settings.top_k, settings.compare_to, settings.all_pairs)
    content = ReportContent(results, [df for _, df, _ in loaded], metrics, included, options)
    return metrics, write_report(content, out)
