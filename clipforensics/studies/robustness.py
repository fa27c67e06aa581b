"""Robustness: every fitted head and LoRA run scored, without refitting, on each perturbed copy of its cache.

    python evaluate.py robustness runs/NAME runs/NAME-lora --out reports/NAME-robustness

Run folders are opened through clipforensics.runs: a fit_heads run folder's heads (runs/NAME/<head>) are
loaded as fitted; a LoRA run folder (lora.json) contributes its saved head on the cache its merged model
re-extracted, which keeps the base cache's copies. Their scores.csv gives the rows and splits they were scored
on. For each copy under /perturbed/<kind:level> of the scorer's cache, the test rows' scores are recomputed from
the copy's embeddings (validation rows stay clean: the threshold is the one a deployed detector would carry) and the
table goes through the same evaluator as `evaluate.py` (evaluate_run: frame and video AUC with bootstrap
intervals over videos): over every test video, and apart for the test groups that ask the tool's question (the
in-domain fakes, the unseen ones pooled, each manipulation alone, every test real against each).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.identity import claim
from clipforensics.core.io import OutputDir, claim_output, write_csv, write_json, write_text
from clipforensics.core.settings import to_dict
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.provenance import TunedTower, test_kind, tuned_tower
from clipforensics.data.scores import DATASET, read_scores
from clipforensics.runs.base import Run
from clipforensics.data.scores import SCORES
from clipforensics.runs.kinds import runs_in
from clipforensics.evaluate.evaluation import check_measure, evaluate_run
from clipforensics.extract.perturb import parse_name
from clipforensics.measure.specs import summary_row
from clipforensics.report.html import write_html
from clipforensics.report.latex import write_table_files
from clipforensics.report.provenance import provenance, provenance_table
from clipforensics.report.robustness import (ALL_TEST, CLEAN, GROUPS_CAPTION, POOLED, POOLED_CAPTION,
                                             groups_table, plot_groups, plot_robustness, robustness_table)
from clipforensics.report.tables import to_markdown
from clipforensics.studies.settings import RobustnessSettings


@dataclass
class FittedScorer:
    """One trained scorer of a run folder, as it was saved: the rows it scored, the cache whose copies it reads,
    and the scores it gives an embedding (a sklearn head, or a LoRA run's head on its merged model's cache)."""

    name: str
    folder: Path
    score: Callable[[np.ndarray], np.ndarray]
    cache: str
    meta: dict[str, Any]
    scores: pd.DataFrame
    check_cache: Callable[[FeatureCache], None]
    no_copies: str  # how to get a cache with perturbed copies for this kind of run


def _scorer(run: Run) -> FittedScorer:
    """A run as robustness scores it: its scored rows, the cache whose copies it reads and its scorer."""
    if run.record.get("layer") is not None:
        raise UserError(f"{run.folder}: fitted on block tokens (--layer {run.record['layer']}); perturbed copies store "
                        "final embeddings only")
    cache = run.scored_cache()
    return FittedScorer(run.label, run.folder, run.scorer(), cache, run.record, read_scores(run.folder / SCORES),
                        run.check_cache, run.kind.no_copies)


def find_scorers(runs: list[str]) -> list[FittedScorer]:
    """Every trained scorer under the given run folders (heads, head folders or LoRA runs), in order."""
    found: list[FittedScorer] = []
    for run in runs:
        for scorer in map(_scorer, runs_in(Path(run))):
            twice = next((f for f in found if f.folder.resolve() == scorer.folder.resolve()), None)
            if twice:
                raise UserError(f"{scorer.folder} is given twice (as {twice.name}); pass each run once")
            namesake = next((f for f in found if f.name == scorer.name), None)
            if namesake:  # rows, curves and sources are keyed by name: one would hide the other
                raise UserError(f"{namesake.folder} and {scorer.folder} are both named {scorer.name}; "
                                "give runs whose folders have distinct names")
            found.append(scorer)
    return found


def _cache_rows(cache: FeatureCache, scores: pd.DataFrame, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The scores table restricted to this cache's rows (a run tested on other data sets keeps its own) and
    each row's index in the cache."""
    if DATASET in scores.columns and scores[DATASET].nunique() > 1:
        own = scores[scores["split"] != "test"][DATASET].iloc[0]
        scores = scores[scores[DATASET] == own]
    scores = scores.drop(columns=[DATASET], errors="ignore").reset_index(drop=True)
    index = pd.Series(np.arange(len(cache.manifest)), index=cache.manifest["path"].to_numpy())
    missing = ~scores["path"].isin(index.index)
    if missing.any():
        raise UserError(f"{name}: {int(missing.sum())} scored rows are not in {cache.path} (e.g. "
                        f"{scores.loc[missing, 'path'].iloc[0]}): the cache changed since the fit")
    return scores, index.loc[scores["path"]].to_numpy()


def copy_scores(scorer: FittedScorer, table: pd.DataFrame, rows: np.ndarray, cache: FeatureCache,
                copy: str | None) -> pd.DataFrame:
    """The run's scores table (`table`, its rows' indices in the cache `rows`, from _cache_rows) with its test rows
    rescored on one perturbed copy (None: the clean embeddings)."""
    test = (table["split"] == "test").to_numpy()
    X = (cache.perturbed[copy] if copy is not None else cache.embeddings)[rows[test]].astype(np.float32)
    table = table.copy()
    table.loc[test, "score"] = scorer.score(X)
    return table


def _load_cache(scorer: FittedScorer, cached: dict[str, FeatureCache]) -> FeatureCache:
    path = scorer.cache
    if path not in cached:
        cache = read_cache(path, perturbed=True)
        if not cache.perturbed:
            raise UserError(f"{scorer.name}: {path} has no perturbed copies; {scorer.no_copies}")
        cached[path] = cache
    scorer.check_cache(cached[path])
    return cached[path]


def claim_robustness(runs: list[str], settings: RobustnessSettings) -> OutputDir:
    """The report folder: a report of other runs is refused, naming them, unless --overwrite (as evaluate.py's)."""
    report = claim_output(settings.out, stage="robustness", inputs=[("run", run) for run in runs])
    old = report.read_record("robustness.json")
    if old is not None:
        held = ", ".join(old.get("runs") or ()) or "no runs"
        claim(old.get("inputs") or {}, run_inputs(runs), f"{report.path} (the robustness report of {held})",
              overwrite=settings.overwrite, replace=lambda: None, made_with="other runs")
    return report


def run_inputs(runs: list[str]) -> dict[str, Any]:
    return {"runs": sorted(str(Path(run).resolve()) for run in runs)}


@dataclass(frozen=True)
class Group:
    """Test videos measured apart: every test real against the test fakes of `fakes`; `kind` says what those fakes
    are to the run (all, in-domain, unseen, backbone-seen)."""

    name: str
    kind: str
    fakes: tuple[str, ...]


def groups_for(trained: list[str], tested: list[str], tower: TunedTower | None) -> list[Group]:
    """Every test video, the in-domain fakes and the unseen ones pooled (where there are any), then each test
    manipulation alone. A manipulation the scorer's backbone was tuned on (TunedTower.saw: the rule of the matrix
    and the report) is backbone-seen, never unseen, whatever the head trained on."""
    kind = {m: test_kind(m, trained, tower) for m in tested}
    pooled = [Group(g, g, tuple(m for m in tested if kind[m] == g)) for g in POOLED]
    return [Group(ALL_TEST, ALL_TEST, tuple(tested)), *(g for g in pooled if g.fakes),
            *(Group(m, kind[m], (m,)) for m in tested)]


def group_table(table: pd.DataFrame, group: Group) -> pd.DataFrame:
    """The scores table of one pooled group: the validation rows as they are (they set the threshold), every test
    real, then the group's test fakes under the group's name (one manipulation to the evaluator, which then measures
    the pool alone rather than each of its manipulations again)."""
    test = table["split"] == "test"
    fake = test & (table["label"] == 1) & table["manipulation"].isin(group.fakes)
    return pd.concat([table[~test], table[test & (table["label"] == 0)], table[fake].assign(manipulation=group.name)],
                     ignore_index=True)


def measure_groups(name: str, table: pd.DataFrame, groups: list[Group],
                   settings: RobustnessSettings) -> list[tuple[Group, dict[str, Any]]]:
    """Each group's metrics from the one evaluator: every test video and each manipulation alone as evaluate_run
    measures them (its per-manipulation results), a pooled group of several manipulations on its own table."""
    result = evaluate_run(name, table, settings)
    per = result.per_manipulation or {m: result.metrics for m in groups[0].fakes}
    measured = []
    for group in groups:
        if group.name == ALL_TEST:
            metrics = result.metrics
        elif len(group.fakes) == 1:
            metrics = per[group.fakes[0]]
        else:
            metrics = evaluate_run(name, group_table(table, group), settings).metrics
        measured.append((group, metrics))
    return measured


def _row(run: str, copy: str | None, group: Group, metrics: dict[str, Any]) -> dict[str, Any]:
    """One robustness row: the columns rows had before test groups, then the group's."""
    p = parse_name(copy) if copy else None
    frame = metrics["frame"]
    return {"run": run, "copy": copy or CLEAN, "kind": p.kind if p else CLEAN, "level": p.level if p else None,
            "severity": p.severity if p else None, **summary_row(metrics), "n_test_frames": frame["n"],
            "n_test_videos": frame["n_videos"], "test_group": group.name, "test_group_kind": group.kind,
            "fakes": list(group.fakes)}


def scorer_groups(scorer: FittedScorer, cache: FeatureCache, table: pd.DataFrame) -> list[Group]:
    """The scorer's test groups: trained on its protocol's train fakes, its backbone as the cache records it."""
    trained = list((scorer.meta.get("protocol") or {}).get("train_fakes") or ())
    tested = sorted(map(str, table.loc[(table["split"] == "test") & (table["label"] == 1), "manipulation"].unique()))
    return groups_for(trained, tested, tuned_tower(cache.path, cache.attrs))


def robustness(runs: list[str], settings: RobustnessSettings) -> dict[str, Any]:
    """AUC of every fitted head on every perturbed copy of its cache, clean first, over every test video and per
    test group, into robustness.* and a report."""
    if not runs:
        raise UserError("give run folders written by fit_heads.py (runs/NAME)")
    check_measure(settings)
    report = claim_robustness(runs, settings)
    heads = find_scorers(runs)
    caches: dict[str, FeatureCache] = {}
    rows: list[dict[str, Any]] = []
    for head in heads:
        cache = _load_cache(head, caches)
        copies = sorted(cache.perturbed, key=lambda n: (parse_name(n).kind, parse_name(n).severity))
        table, cache_rows = _cache_rows(cache, head.scores, head.name)  # the same rows for every copy
        groups = scorer_groups(head, cache, table)
        for copy in [None, *copies]:
            scored = copy_scores(head, table, cache_rows, cache, copy)
            rows += [_row(head.name, copy, group, metrics)
                     for group, metrics in measure_groups(head.name, scored, groups, settings)]
    return write_robustness(rows, heads, caches, settings, report, run_inputs(runs))


FILES = ("robustness.json", "robustness.csv", "robustness.md", "robustness.png", "robustness.svg",
         "robustness_groups.png", "robustness_groups.svg", "robustness_groups.csv", "robustness_groups.tex",
         "report.html")


def write_robustness(rows: list[dict[str, Any]], heads: list[FittedScorer], caches: dict[str, FeatureCache],
                     settings: RobustnessSettings, report: OutputDir, inputs: dict[str, Any]) -> dict[str, Any]:
    """The report files, replacing only the ones an earlier run of this command wrote in the folder.

    robustness.json keeps the rows over every test video under `robustness`, as before test groups, and the
    groups' rows under `robustness_groups`; robustness.csv holds both, told apart by `group`."""
    report.clear()
    report.own(*FILES)
    out = report.path
    first = heads[0].meta
    prov = provenance([str(c.path) for c in caches.values()], first.get("protocol"), [h.scores for h in heads])
    pooled = [r for r in rows if r["test_group"] == ALL_TEST]
    grouped = [r for r in rows if r["test_group"] != ALL_TEST]
    metrics = {"provenance": prov, "settings": to_dict(settings), "package_version": __version__, "inputs": inputs,
               "robustness": pooled, "robustness_groups": grouped, "runs": {h.name: {"source": h.meta} for h in heads}}
    write_json(out / "robustness.json", metrics)
    flat = pd.DataFrame([{key: json.dumps(value) if key.endswith("_ci") or isinstance(value, list) else value
                          for key, value in r.items()} for r in pooled + grouped])
    write_csv(out / "robustness.csv", flat)
    table, groups = robustness_table(pooled), groups_table(pooled + grouped)
    write_text(out / "robustness.md", to_markdown(groups) + "\n\n" + to_markdown(table) + "\n")
    write_table_files(groups, out, "robustness_groups", GROUPS_CAPTION)
    figures = [(GROUPS_CAPTION, plot_groups(pooled + grouped, out / "robustness_groups.png")),
               (POOLED_CAPTION, plot_robustness(pooled, out / "robustness.png", svg=True))]
    write_html(out / "report.html", "clipforensics robustness", [provenance_table(prov), groups, table], figures,
               metrics)
    print(to_markdown(groups))
    print(f"report: {out / 'report.html'}")
    return metrics
