"""Robustness: every fitted head and LoRA run scored, without refitting, on each perturbed copy of its cache.

    python evaluate.py robustness runs/NAME runs/NAME-lora --out reports/NAME-robustness

A run folder's heads (runs/NAME/<head>/model.joblib + head.json) are loaded as fitted; a LoRA run folder
(lora.json) contributes its saved head on the cache its merged model re-extracted, which keeps the base
cache's copies. Their scores.csv gives the rows and splits they were scored on. For each copy under
/perturbed/<kind:level> of the scorer's cache, the test rows' scores are recomputed from the copy's
embeddings (validation rows stay clean: the threshold is the one a deployed detector would carry) and the
table goes through the same evaluator as `evaluate.py` (evaluate_run: frame and video AUC with bootstrap
intervals over videos).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.core.io import OutputDir, claim_output, read_json_object, write_csv, write_json, write_text
from clipforensics.core.settings import option, to_dict
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.scores import DATASET, read_scores
from clipforensics.heads.fit import load_head
from clipforensics.evaluate.evaluation import MeasureSettings, check_measure, evaluate_run
from clipforensics.extract.perturb import parse_name
from clipforensics.report.html import write_html
from clipforensics.report.provenance import provenance, provenance_table
from clipforensics.report.robustness import CLEAN, plot_robustness, robustness_table
from clipforensics.report.tables import to_markdown

HEAD_FILES = ("model.joblib", "head.json", "scores.csv")
LORA_FILES = ("lora.json", "head.safetensors", "scores.csv")


@dataclass
class RobustnessSettings(MeasureSettings):
    out: str = option(None, "report folder", required=True, metavar="DIR")


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


def _missing(folder: Path, files: tuple[str, ...], fix: str) -> None:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{folder}: missing {', '.join(missing)}; {fix}")


def _read_meta(path: Path, required: str, fix: str) -> dict[str, Any]:
    """A run's JSON record (head.json, lora.json), refused by name when damaged rather than half-read."""
    meta = read_json_object(path, fix)
    if not meta.get(required):
        raise UserError(f"{path} is not a run record (no {required!r}); {fix}")
    return meta


def _fitted_heads(folder: Path) -> list[FittedScorer]:
    """A fit_heads run folder (every head in it) or one head folder; heads are scored by predict_proba."""
    heads = [folder] if (folder / "head.json").is_file() else sorted(p for p in folder.iterdir()
                                                                       if (p / "head.json").is_file())
    if not heads:
        raise UserError(f"{folder} holds no fitted head (runs/NAME/<head>/model.joblib + head.json) "
                        "nor a LoRA run (lora.json)")
    found = []
    for h in heads:
        _missing(h, HEAD_FILES, "refit the run with fit_heads.py")
        meta = _read_meta(h / "head.json", "cache", "refit the run with fit_heads.py")
        if meta.get("layer") is not None:
            raise UserError(f"{h}: fitted on block tokens (--layer {meta['layer']}); perturbed copies store "
                            "final embeddings only")

        def same_cache(cache: FeatureCache, h: Path = h, expected: Any = meta.get("cache_identity")) -> None:
            if expected and cache.identity() != expected:
                raise UserError(f"{h}: {cache.path} is not the cache the head was fitted on (re-extracted?)")

        head = load_head(h / "model.joblib")
        found.append(FittedScorer(f"{h.parent.name}/{h.name}", h, head.predict_proba, meta["cache"], meta,
                                  read_scores(h / "scores.csv"), same_cache,
                                  "re-extract it with extract_features.py --perturb (e.g. --perturb jpeg:90,50 "
                                  "blur:1,2) and refit"))
    return found


def _lora_run(folder: Path) -> list[FittedScorer]:
    """A finetune_lora run folder: its head on the embeddings of its merged model, i.e. on the cache the run
    re-extracted (which carries the base cache's perturbed copies)."""
    from clipforensics.lora.checkpoint import load_head_tensors  # peft and open_clip: only for LoRA runs
    from clipforensics.lora.model import fake_probability
    from clipforensics.lora.stage import HEAD_FILE

    _missing(folder, LORA_FILES, "rerun finetune_lora.py with the same settings to finish the run")
    meta = _read_meta(folder / "lora.json", "adapter_sha", "rerun finetune_lora.py with the same settings")
    cache = meta.get("lora_cache")
    if not cache:
        raise UserError(f"{folder}: the LoRA run was made with --no-extract, so no cache holds its merged model's "
                        "embeddings; rerun it with --extract")
    if not Path(cache).is_file():
        where = "" if Path(cache).is_absolute() else f" (relative to the folder training ran in, not {Path.cwd()})"
        raise UserError(f"{folder}: the LoRA run's cache {cache} is not found{where}; run from that folder, or rerun "
                        "finetune_lora.py with the same settings to re-extract it")

    def own_cache(c: FeatureCache) -> None:
        if c.attrs.get("adapter_sha") != meta.get("adapter_sha"):
            raise UserError(f"{folder}: {c.path} was not extracted with this run's adapter (sha256 "
                            f"{str(c.attrs.get('adapter_sha'))[:16]} != {str(meta.get('adapter_sha'))[:16]})")

    head = load_head_tensors(folder / HEAD_FILE)
    return [FittedScorer(folder.name, folder, functools.partial(fake_probability, head), cache, meta,
                         read_scores(folder / "scores.csv"), own_cache,
                         "train the LoRA run on a base cache extracted with --perturb (its re-extracted cache "
                         "keeps the same copies)")]


@dataclass(frozen=True)
class RunKind:
    marker: str | None  # the file that makes a folder this kind of run; None: the kind a folder is otherwise
    read: Callable[[Path], list[FittedScorer]]


RUN_KINDS: Registry[RunKind] = Registry("run kind")
"""Each kind of run folder robustness scores: the first whose marker is in the folder reads it."""
RUN_KINDS.register("lora", RunKind(LORA_FILES[0], _lora_run))
RUN_KINDS.register("heads", RunKind(None, _fitted_heads))


def find_scorers(runs: list[str]) -> list[FittedScorer]:
    """Every trained scorer under the given run folders (heads, head folders or LoRA runs), in order."""
    found: list[FittedScorer] = []
    for run in runs:
        folder = Path(run)
        if not folder.is_dir():
            raise UserError(f"run folder not found: {folder}")
        kinds = (RUN_KINDS.get(name) for name in RUN_KINDS.names())
        kind = next(k for k in kinds if k.marker is None or (folder / k.marker).is_file())
        for scorer in kind.read(folder):
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


def robustness(runs: list[str], settings: RobustnessSettings) -> dict[str, Any]:
    """AUC of every fitted head on every perturbed copy of its cache, clean first, into robustness.* and a report."""
    if not runs:
        raise UserError("give run folders written by fit_heads.py (runs/NAME)")
    check_measure(settings)
    report = claim_output(settings.out, stage="robustness", inputs=[("run", run) for run in runs])
    heads = find_scorers(runs)
    caches: dict[str, FeatureCache] = {}
    rows: list[dict[str, Any]] = []
    for head in heads:
        cache = _load_cache(head, caches)
        copies = sorted(cache.perturbed, key=lambda n: (parse_name(n).kind, parse_name(n).severity))
        table, cache_rows = _cache_rows(cache, head.scores, head.name)  # the same rows for every copy
        for copy in [None, *copies]:
            result = evaluate_run(head.name, copy_scores(head, table, cache_rows, cache, copy), settings)
            p = parse_name(copy) if copy else None
            frame, video = result.metrics["frame"], result.metrics["video"]
            rows.append({"run": head.name, "copy": copy or CLEAN, "kind": p.kind if p else CLEAN,
                         "level": p.level if p else None, "severity": p.severity if p else None,
                         "frame_auc": frame["auc"], "frame_auc_ci": frame["auc_ci"],
                         "video_auc": video["auc"], "video_auc_ci": video["auc_ci"],
                         "n_test_frames": frame["n"], "n_test_videos": frame["n_videos"]})
    return write_robustness(rows, heads, caches, settings, report)


FILES = ("robustness.json", "robustness.csv", "robustness.md", "robustness.png", "report.html")


def write_robustness(rows: list[dict[str, Any]], heads: list[FittedScorer], caches: dict[str, FeatureCache],
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
