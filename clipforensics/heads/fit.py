"""The heads stage: apply the protocol to a cache, fit each named head, write models and scores."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core.io import OutputDir, atomic_path, claim_output, write_json
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.crossdata import CrossSettings, check_disjoint, dataset_name, load_test_sets, scores_with_tests
from clipforensics.core.errors import UserError
from clipforensics.heads.heads import Features, FitResult, fit_head, resolve_heads
from clipforensics.heads.layers import (SWEEP_FILES, layer_view, refuse_other_study, refuse_prompt_heads,
                                       replace_or_refuse)
from clipforensics.data.protocol import ProtocolSettings, Splits, log_splits, make_splits
from clipforensics.data.provenance import check_lora_overlap, run_identity
from clipforensics.data.splitfile import TABLE_NAME, write_split_table
from clipforensics.data.scores import write_scores
from clipforensics.core.settings import option, to_dict

RUN_FILE = "run.json"
SCORED_SPLITS = ("val", "test")
RUN_BOOKKEEPING = ("fit", "package_version", "finished")  # run.json keys beside the identity


@dataclass
class FitSettings:
    """Heads to fit on one cache. A fit needs a run folder; only listing the heads (no FitSettings) does not."""

    cache: str = option(None, "feature cache written by extract_features.py", required=True, metavar="FILE")
    heads: tuple[str, ...] = option(("logreg", "svm", "zeroshot-v2"), "heads to fit (comma list, or 'all')")
    out: str = option(None, "run folder: one sub-folder per head (required unless --list-heads)", metavar="DIR")
    overwrite: bool = option(False, "replace a run (the files fit_heads wrote) made from another cache or protocol")
    layer: str | None = option(None, "fit on stored block tokens instead of the final embedding: K, last, or "
                                     "concat:K,L (cache made with --layers)", metavar="SPEC")
    layer_sweep: bool = option(False, "fit the heads on every stored layer and write layer_sweep.{csv,md,json,png} "
                                      "(val AUC picks the layer, test AUC beside it)")

    def __post_init__(self) -> None:
        if not self.out:
            raise UserError("--out is required (the run folder) unless --list-heads")


def split_rows(cache: FeatureCache, protocol: ProtocolSettings) -> pd.DataFrame:
    """The cache's manifest with its protocol split (index = row in the embedding matrix)."""
    return make_splits(cache.manifest, protocol).rows


def features(cache: FeatureCache, rows: pd.DataFrame, split: str) -> Features:
    return Features.of(cache.embeddings, rows[rows["split"] == split])


def scored_rows(cache: FeatureCache, rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows a head scores (validation picks the threshold, test is measured) and their features."""
    scored = rows[rows["split"].isin(SCORED_SPLITS)]
    return scored, cache.embeddings[scored.index.to_numpy()].astype("float32")


def claim_run_dir(out: Path, identity: dict[str, Any], overwrite: bool, caches: list[str]) -> OutputDir:
    """The run folder, owned by this stage and tied to one cache and protocol.

    Heads of another cache or protocol are never mixed in: refused, or with --overwrite replaced (only
    the files this stage wrote go). A run in which no head finished (a failed or killed start) is no
    result and is replaced without --overwrite, so it cannot block the next valid run.
    """
    inputs = [("--cache", caches[0]), *(("--test-cache", c) for c in caches[1:])]
    run_dir = claim_output(out, stage="fit_heads", inputs=inputs)
    run_dir.remove_stale_temps()
    refuse_other_study(run_dir, "layer_sweep.json", identity, overwrite)
    old = run_dir.read_record(RUN_FILE)
    if old is None or not old.get("finished"):
        run_dir.clear(keep=SWEEP_FILES)  # a layer sweep of this cache and protocol is a result: it stays
        return run_dir
    replace_or_refuse(run_dir, RUN_FILE, old, identity_differences(old, identity), overwrite)
    return run_dir


def identity_differences(old: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """Identity keys on which a recorded run and this one differ, read both ways: a key only the old run has
    (a --layer or --test-cache it was fitted with) differs too, else heads of two kinds would share a folder."""
    new = json.loads(json.dumps(identity))
    keys = set(new) | (set(old) - set(RUN_BOOKKEEPING))
    return sorted(k for k in keys if old.get(k) != new.get(k))


def save_head(out_dir: Path, result: FitResult, meta: dict[str, Any]) -> None:
    with atomic_path(out_dir / "model.joblib", suffix=".joblib") as tmp:
        joblib.dump(result.head, tmp)
    write_json(out_dir / "head.json", {**meta, **result.info})


def load_head(path: Path) -> Any:
    """The fitted head save_head wrote (model.joblib), for scorers that reuse it (robustness, detect.py); a damaged
    or foreign file is one line: unpickling can fail with any exception type."""
    try:
        head = joblib.load(path)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path} is not a readable head ({type(exc).__name__}: {first}); refit the run with "
                        "fit_heads.py") from None
    if not callable(getattr(head, "predict_proba", None)):
        raise UserError(f"{path} does not hold a clipforensics head (a {type(head).__name__}); refit the run with "
                        "fit_heads.py")
    return head


def fit_heads(settings: FitSettings, protocol: ProtocolSettings,
              cross: CrossSettings | None = None) -> list[dict[str, Any]]:
    """Fit every head on train, select on val, score val and test (and every other data set's test rows)."""
    cache = read_cache(settings.cache, layers=settings.layer is not None)
    if settings.layer is not None:
        refuse_prompt_heads(settings.heads, settings.layer)
        cache = layer_view(cache, settings.layer)
    names = resolve_heads(settings.heads, cache.prompts)
    tests = load_test_sets(cache, cross, protocol.frames_per_video) if cross else []
    if tests and settings.layer is not None:
        raise UserError("--layer reads block tokens of this cache only; fit without --test-cache, or without --layer")
    splits = make_splits(cache.manifest, protocol)
    check_lora_overlap(cache.attrs, splits.rows, str(cache.path))
    log_splits(splits)
    rows = splits.rows
    for test in tests:
        check_disjoint(rows, test)
        print(test.summary(), file=sys.stderr)
    train, val = features(cache, rows, "train"), features(cache, rows, "val")
    scored, X_scored = scored_rows(cache, rows)
    identity = {**run_identity(cache, protocol), "splits": splits.digest()}
    if tests:
        identity["test_sets"] = [test.record() for test in tests]
    if settings.layer is not None:
        identity["layer"] = settings.layer
    run_dir = claim_run_dir(Path(settings.out), identity, settings.overwrite,
                            [settings.cache, *(cross.test_cache if cross else ())])
    finished = list((run_dir.read_record(RUN_FILE) or {}).get("finished", []))
    run_info = {**identity, "fit": to_dict(settings), "package_version": __version__}
    write_json(run_dir.file(RUN_FILE), {**run_info, "finished": finished})
    run_dir.own(TABLE_NAME)
    write_split_table(run_dir.path, splits.table())
    summaries = []
    for name in names:
        result = fit_head(name, cache.prompts, train, val)
        meta = {**identity, "scorer": "head", "name": name, "data_root": cache.attrs.get("data_root"),
                "package_version": __version__}
        run_dir.own(name)
        head_dir = run_dir.path / name
        save_head(head_dir, result, meta)
        table = scores_with_tests(scored, result.head.predict_proba(X_scored), dataset_name(cache.path), tests,
                                  lambda test: result.head.predict_proba(test.features))
        write_scores(head_dir, table, {**meta, **result.info})
        print(f"{name:>16}: val video AUC {result.head.val_auc:.3f}  fit {result.seconds:.2f} s  "
              f"{result.head.params if result.head.trains else ''}", file=sys.stderr)
        summaries.append(result.info)
        finished = sorted(set(finished) | {name})
        write_json(run_dir.path / RUN_FILE, {**run_info, "finished": finished})
    return summaries
