"""The method comparison: fine-tuned runs of several methods (finetune_lora.py --method), trained on one base cache
under one protocol, side by side in one report.

    python evaluate.py methods runs/NAME-{lora,dora,layernorm,svd} --out reports/NAME-methods

Every number comes from the shared evaluator (evaluate_run on each run's scores.csv: threshold from validation rows,
test rows measured, intervals over videos): per run, video AUC on the in-domain manipulations (those it trained on)
and on each unseen one, each against all real test videos. Trainable parameters come from each run's lora.json
(the method's and the head's apart, the method's share of the image tower). Against the run --compare-to names (a
run's name or method; the LoRA run by default) each other run gets, per manipulation, the paired video bootstrap of
the AUC difference and DeLong's test (evaluate/compare.py), on the very same test videos. Runs made from another
base cache or protocol are refused, naming every differing field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.identity import check, claim
from clipforensics.core.io import OutputDir, claim_output, write_csv, write_json, write_text
from clipforensics.core.settings import to_dict
from clipforensics.data.scores import SCORES, read_scores
from clipforensics.evaluate.compare import paired_difference
from clipforensics.evaluate.evaluation import check_measure, evaluate_run, split_datasets
from clipforensics.measure.result import RunResult
from clipforensics.report.html import write_html
from clipforensics.report.methods import differences_table, methods_table
from clipforensics.report.provenance import provenance, provenance_table
from clipforensics.report.tables import to_markdown
from clipforensics.runs.base import Run
from clipforensics.runs.kinds import open_run
from clipforensics.runs.tuned import TowerKind, run_method
from clipforensics.studies.settings import MethodsSettings

SHARED = ("base", "protocol")
"""What every compared run's record must hold alike: the base cache (path and identity) and the protocol."""
FILES = ("methods.json", "methods.csv", "methods.md", "report.html")


@dataclass
class TunedRun:
    """One fine-tuned run as the comparison reads it: its method, record and measured test split."""

    name: str
    method: str
    record: dict[str, Any]
    result: RunResult

    @property
    def parameters(self) -> dict[str, Any]:
        """Trainable parameters of the method and of the head, the tower's size and the method's share of it
        (None where a record predates the count)."""
        counts = self.record.get("parameters") or {}
        return {"method": counts.get(self.method), "head": counts.get("head"), "tower": counts.get("tower"),
                "share_of_tower": counts.get("method_share_of_tower")}


def open_tuned(folder: str) -> Run:
    run = open_run(Path(folder))
    if not isinstance(run.kind, TowerKind):
        raise UserError(f"{folder} is a {run.kind.title}; the method comparison takes finetune_lora.py run folders")
    return run


def check_shared(runs: list[Run]) -> None:
    """Refuse runs made from another base cache or under another protocol than the first, naming every field."""
    first = {key: runs[0].record.get(key) for key in SHARED}
    for run in runs[1:]:
        check({key: run.record.get(key) for key in SHARED}, first, str(run.folder),
              made_with=f"another base cache or protocol than {runs[0].folder}",
              remedy="compare runs trained on one base cache under one protocol")


def measure(run: Run, settings: MethodsSettings) -> TunedRun:
    """The run's own test set (a run also tested on other data sets keeps its training data set's rows) through
    the shared evaluator."""
    _, _, table = split_datasets(run.label, read_scores(run.folder / SCORES))[0]
    return TunedRun(run.label, run_method(run).name, run.record, evaluate_run(run.label, table, settings))


def manipulations(run: TunedRun) -> list[tuple[str, str]]:
    """(manipulation, in-domain or unseen) of the run's test fakes, in-domain first."""
    trained = set((run.record.get("protocol") or {}).get("train_fakes") or ())
    found = sorted(set(run.result.scores.loc[run.result.scores["label"] == 1, "manipulation"]))
    return sorted(((m, "in-domain" if m in trained else "unseen") for m in found), key=lambda mr: mr[1] != "in-domain")


def against_reals(result: RunResult, manipulation: str) -> RunResult:
    """The result's test rows cut to every real and the fakes of one manipulation (the per-manipulation cell)."""
    scores = result.scores
    keep = (scores["label"] == 0) | (scores["manipulation"] == manipulation)
    return dataclasses.replace(result, scores=scores[keep].reset_index(drop=True))


def cells(run: TunedRun) -> list[dict[str, Any]]:
    """One row per manipulation: the evaluator's video AUC [CI] of all reals against its fakes."""
    rows = []
    for manipulation, role in manipulations(run):
        video = (run.result.per_manipulation.get(manipulation) or run.result.metrics)["video"]
        rows.append({"run": run.name, "method": run.method, "manipulation": manipulation, "role": role,
                     "video_auc": video["auc"], "video_auc_ci": video.get("auc_ci"),
                     "n_real_videos": video["n_real"], "n_fake_videos": video["n_fake"]})
    return rows


def differences(run: TunedRun, baseline: TunedRun, settings: MethodsSettings) -> list[dict[str, Any]]:
    """Per manipulation: video AUC of `run` minus the baseline's, paired bootstrap interval and DeLong's test."""
    rows = []
    for manipulation, role in manipulations(run):
        pair = paired_difference(against_reals(run.result, manipulation), against_reals(baseline.result, manipulation),
                                 settings.bootstrap, settings.bootstrap_seed)["video"]
        rows.append({"run": run.name, "method": run.method, "baseline": baseline.name, "manipulation": manipulation,
                     "role": role, "diff": pair["diff"], "diff_ci": pair.get("diff_ci"),
                     "distinguishable": pair.get("distinguishable"), "delong": pair["delong"]})
    return rows


def pick_baseline(runs: list[TunedRun], wanted: str) -> TunedRun:
    """The run --compare-to names: a run of that name, else the (first) run of that fine-tuning method."""
    found = next((run for run in runs if run.name == wanted), None) or next(
        (run for run in runs if run.method == wanted), None)
    if found is None:
        raise UserError(f"--compare-to {wanted}: no run of that name or method among "
                        f"{', '.join(f'{r.name} ({r.method})' for r in runs)}; name one of them, or give a run "
                        f"trained with finetune_lora.py --method {wanted}")
    return found


def run_inputs(runs: list[str]) -> dict[str, Any]:
    return {"runs": sorted(str(Path(run).resolve()) for run in runs)}


def claim_report(runs: list[str], settings: MethodsSettings) -> OutputDir:
    """The report folder: a comparison of other runs is refused, naming them, unless --overwrite."""
    report = claim_output(settings.out, stage="methods", inputs=[("run", run) for run in runs])
    old = report.read_record("methods.json")
    if old is not None:
        held = ", ".join(old.get("inputs", {}).get("runs") or ()) or "no runs"
        claim(old.get("inputs") or {}, run_inputs(runs), f"{report.path} (the method comparison of {held})",
              overwrite=settings.overwrite, replace=lambda: None, made_with="other runs")
    return report


def compare_methods(runs: list[str], settings: MethodsSettings) -> dict[str, Any]:
    """Every run measured, checked to share base cache and protocol, compared with the baseline; written."""
    if not runs:
        raise UserError("give finetune_lora.py run folders (runs/NAME-lora runs/NAME-svd ...)")
    check_measure(settings)
    report = claim_report(runs, settings)
    opened = [open_tuned(run) for run in runs]
    twice = {r.label for r in opened if sum(o.label == r.label for o in opened) > 1}
    if twice:
        raise UserError(f"runs named {', '.join(sorted(twice))} are given twice; pass runs whose folders have "
                        "distinct names")
    check_shared(opened)
    tuned = [measure(run, settings) for run in opened]
    baseline = pick_baseline(tuned, settings.compare_to)
    rows = [row for run in tuned for row in cells(run)]
    diffs = [row for run in tuned if run is not baseline for row in differences(run, baseline, settings)]
    return write_report(tuned, rows, diffs, opened, settings, report, run_inputs(runs))


def write_report(tuned: list[TunedRun], rows: list[dict[str, Any]], diffs: list[dict[str, Any]], opened: list[Run],
                 settings: MethodsSettings, report: OutputDir, inputs: dict[str, Any]) -> dict[str, Any]:
    """methods.json / .csv / .md and report.html, replacing only what an earlier comparison wrote in the folder."""
    report.clear()
    report.own(*FILES)
    out = report.path
    base = opened[0].record.get("base") or {}
    prov = provenance([str(base.get("cache"))], opened[0].record.get("protocol"), [t.result.scores for t in tuned])
    runs = {t.name: {"method": t.method, "folder": str(run.folder), "parameters": t.parameters,
                     "settings": t.record.get("settings"), "best_epoch": t.record.get("best_epoch")}
            for t, run in zip(tuned, opened)}
    metrics = {"provenance": prov, "settings": to_dict(settings), "package_version": __version__, "inputs": inputs,
               "runs": runs, "cells": rows, "differences": diffs}
    write_json(out / "methods.json", metrics)
    write_csv(out / "methods.csv", pd.DataFrame([{k: json.dumps(v) if k.endswith("_ci") else v for k, v in r.items()}
                                                 for r in rows]))
    tables = [methods_table(rows, runs), differences_table(diffs, settings.compare_to)]
    text = "\n\n".join(to_markdown(t) for t in tables)
    write_text(out / "methods.md", text + "\n")
    write_html(out / "report.html", "clipforensics method comparison", [provenance_table(prov), *tables], [], metrics)
    print(text)
    print(f"report: {out / 'report.html'}")
    return metrics
