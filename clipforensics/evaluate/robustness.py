"""Robustness: every fitted head scored, without refitting, on each perturbed copy of its cache.

    python evaluate.py robustness runs/NAME --out reports/NAME-robustness

A run folder's heads (runs/NAME/<head>/model.joblib + head.json) are loaded as fitted; their scores.csv
gives the rows and splits they were scored on. For each copy under /perturbed/<kind:level> of the head's
cache, the test rows' scores are recomputed from the copy's embeddings (validation rows stay clean: the
threshold is the one a deployed detector would carry) and the table goes through the same evaluator as
`evaluate.py` (evaluate_run: frame and video AUC with bootstrap intervals over videos).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, claim_output, write_csv, write_json, write_text
from clipforensics.core.settings import option, to_dict
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.scores import DATASET, read_scores
from clipforensics.evaluate.evaluation import MeasureSettings, check_measure, evaluate_run
from clipforensics.extract.perturb import parse_name
from clipforensics.report.html import write_html
from clipforensics.report.provenance import provenance, provenance_table
from clipforensics.report.robustness import plot_robustness, robustness_table
from clipforensics.report.tables import to_markdown

CLEAN = "clean"
HEAD_FILES = ("model.joblib", "head.json", "scores.csv")
LORA_FILE = "lora.json"


@dataclass
class RobustnessSettings(MeasureSettings):
    out: str = option(None, "report folder", required=True, metavar="DIR")


@dataclass
class FittedHead:
    """One fitted head of a run folder, with the rows it scored and the cache it read."""

    name: str
    folder: Path
    head: Any
    meta: dict[str, Any]
    scores: pd.DataFrame


def _lora_refusal(folder: Path) -> UserError:
    """A LoRA run's scorer is its merged model; its perturbed scores can only come from a cache of copies."""
    summary = json.loads((folder / LORA_FILE).read_text())
    cache = summary.get("lora_cache")
    if cache and Path(cache).is_file() and read_cache(cache, perturbed=True).perturbed:
        return UserError(f"{folder}: a LoRA run is scored on copies through heads fitted on its cache: "
                         f"run fit_heads.py --cache {cache} and pass that run folder")
    return UserError(f"{folder}: the LoRA run's cache {cache or '(none: run with --extract)'} has no perturbed "
                     "copies; re-extract it with extract_features.py --perturb, fit heads on it, pass that run")


def find_heads(runs: list[str]) -> list[FittedHead]:
    """Every fitted head under the given run folders (or head folders), in order."""
    found: list[FittedHead] = []
    for run in runs:
        folder = Path(run)
        if not folder.is_dir():
            raise UserError(f"run folder not found: {folder}")
        if (folder / LORA_FILE).is_file():
            raise _lora_refusal(folder)
        heads = [folder] if (folder / "head.json").is_file() else sorted(p for p in folder.iterdir()
                                                                           if (p / "head.json").is_file())
        if not heads:
            raise UserError(f"{folder} holds no fitted head (runs/NAME/<head>/model.joblib + head.json)")
        for h in heads:
            missing = [f for f in HEAD_FILES if not (h / f).is_file()]
            if missing:
                raise UserError(f"{h}: missing {', '.join(missing)}; refit the run with fit_heads.py")
            meta = json.loads((h / "head.json").read_text())
            if meta.get("layer") is not None:
                raise UserError(f"{h}: fitted on block tokens (--layer {meta['layer']}); perturbed copies store "
                                "final embeddings only")
            name = f"{h.parent.name}/{h.name}"
            found.append(FittedHead(name, h, joblib.load(h / "model.joblib"), meta, read_scores(h / "scores.csv")))
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


def copy_scores(head: FittedHead, cache: FeatureCache, copy: str | None) -> pd.DataFrame:
    """The run's scores table with its test rows rescored on one perturbed copy (None: the clean embeddings)."""
    table, rows = _cache_rows(cache, head.scores, head.name)
    test = (table["split"] == "test").to_numpy()
    X = (cache.perturbed[copy] if copy is not None else cache.embeddings)[rows[test]].astype(np.float32)
    table = table.copy()
    table.loc[test, "score"] = head.head.predict_proba(X)
    return table


def _load_cache(path: str, cached: dict[str, FeatureCache], name: str) -> FeatureCache:
    if path not in cached:
        cache = read_cache(path, perturbed=True)
        if not cache.perturbed:
            raise UserError(f"{path} has no perturbed copies; re-extract it with extract_features.py --perturb "
                            "(e.g. --perturb jpeg:90,50 blur:1,2) and refit")
        cached[path] = cache
    return cached[path]


def robustness(runs: list[str], settings: RobustnessSettings) -> dict[str, Any]:
    """AUC of every fitted head on every perturbed copy of its cache, clean first, into robustness.* and a report."""
    if not runs:
        raise UserError("give run folders written by fit_heads.py (runs/NAME)")
    check_measure(settings)
    report = claim_output(settings.out, stage="robustness", inputs=[("run", run) for run in runs])
    heads = find_heads(runs)
    caches: dict[str, FeatureCache] = {}
    rows: list[dict[str, Any]] = []
    for head in heads:
        cache = _load_cache(head.meta["cache"], caches, head.name)
        if head.meta.get("cache_identity") and cache.identity() != head.meta["cache_identity"]:
            raise UserError(f"{head.name}: {cache.path} is not the cache the head was fitted on (re-extracted?)")
        copies = sorted(cache.perturbed, key=lambda n: (parse_name(n).kind, parse_name(n).severity))
        for copy in [None, *copies]:
            result = evaluate_run(head.name, copy_scores(head, cache, copy), settings)
            p = parse_name(copy) if copy else None
            frame, video = result.metrics["frame"], result.metrics["video"]
            rows.append({"run": head.name, "copy": copy or CLEAN, "kind": p.kind if p else CLEAN,
                         "level": p.level if p else None, "severity": p.severity if p else None,
                         "frame_auc": frame["auc"], "frame_auc_ci": frame["auc_ci"],
                         "video_auc": video["auc"], "video_auc_ci": video["auc_ci"],
                         "n_test_frames": frame["n"], "n_test_videos": frame["n_videos"]})
    return write_robustness(rows, heads, caches, settings, report)


FILES = ("robustness.json", "robustness.csv", "robustness.md", "robustness.png", "report.html")


def write_robustness(rows: list[dict[str, Any]], heads: list[FittedHead], caches: dict[str, FeatureCache],
                     settings: RobustnessSettings, report: OutputDir) -> dict[str, Any]:
    """The report files, replacing only the ones an earlier run of this command wrote in the folder."""
    report.clear()
    report.own(*FILES)
    out = report.path
    first = heads[0].meta
    prov = provenance([str(c.path) for c in caches.values()], first.get("protocol"), [h.scores for h in heads])
    metrics = {"provenance": prov, "settings": to_dict(settings), "package_version": __version__,
               "robustness": rows, "runs": {h.name: {"source": h.meta} for h in heads}}
    write_json(out / "robustness.json", metrics)
    flat = pd.DataFrame([{**r, "frame_auc_ci": json.dumps(r["frame_auc_ci"]),
                          "video_auc_ci": json.dumps(r["video_auc_ci"])} for r in rows])
    write_csv(out / "robustness.csv", flat)
    table = robustness_table(rows)
    write_text(out / "robustness.md", to_markdown(table) + "\n")
    png = plot_robustness(rows, out / "robustness.png")
    write_html(out / "report.html", "clipforensics robustness", [provenance_table(prov), table],
               [("AUC vs severity, per perturbation kind (95% CI)", png)], metrics)
    print(to_markdown(table))
    print(f"report: {out / 'report.html'}")
    return metrics
