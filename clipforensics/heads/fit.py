"""The heads stage: apply the protocol to a cache, fit each named head, write models and scores."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd

from clipforensics import __version__
from clipforensics.core.identity import declare
from clipforensics.core.io import write_json
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.crossdata import (CrossSettings, TestSet, check_disjoint, dataset_name, load_test_sets,
                                          scores_with_tests)
from clipforensics.core.errors import UserError
from clipforensics.heads.features import features, scored_probabilities, scored_split, test_probabilities
from clipforensics.heads.heads import FitResult, fit_head, resolve_heads
from clipforensics.heads.saved import save_head
from clipforensics.heads.folder import RUN_FILE, claim_run_dir
from clipforensics.heads.settings import FitSettings
from clipforensics.heads.layers import layer_view, refuse_prompt_heads
from clipforensics.data.protocol import ProtocolSettings, log_splits, make_splits
from clipforensics.data.provenance import check_lora_overlap, run_identity
from clipforensics.data.splitfile import TABLE_NAME, write_split_table
from clipforensics.data.scores import write_scores
from clipforensics.core.settings import to_dict


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
    rows = splits.rows
    for test in tests:
        check_disjoint(rows, test)
    tested = {"test_sets": [test.record() for test in tests]} if tests else {}
    identity = declare(settings, inputs={**run_identity(cache, protocol), "splits": splits.digest(), **tested})
    run_dir = claim_run_dir(Path(settings.out), identity, settings.overwrite,
                            [settings.cache, *(cross.test_cache if cross else ())])  # refused before any output
    log_splits(splits)
    for test in tests:
        print(test.summary(), file=sys.stderr)
    train, val = features(cache, rows, "train"), features(cache, rows, "val")
    scored = scored_split(rows)
    finished = list((run_dir.read_record(RUN_FILE) or {}).get("finished", []))
    run_info = {**identity, "fit": to_dict(settings), "package_version": __version__}
    write_json(run_dir.file(RUN_FILE), {**run_info, "finished": finished})
    run_dir.own(TABLE_NAME)
    write_split_table(run_dir.path, splits.table())
    summaries = []
    for name in names:
        result = fit_head(name, cache.prompts, train, val)
        meta = {**identity, "scorer": "head", "name": name, "data_root": cache.attrs.get("data_root"),
                "split_file_absent": splits.absent or None, "package_version": __version__}
        run_dir.own(name)
        head_dir = run_dir.path / name
        save_head(head_dir, result, meta)
        write_scores(head_dir, scores_table(result, cache, scored, tests), {**meta, **result.info})
        print(f"{name:>16}: val video AUC {result.head.val_auc:.3f}  fit {result.seconds:.2f} s  "
              f"{result.head.params if result.head.trains else ''}", file=sys.stderr)
        summaries.append(result.info)
        finished = sorted(set(finished) | {name})
        write_json(run_dir.path / RUN_FILE, {**run_info, "finished": finished})
    return summaries


def scores_table(result: FitResult, cache: FeatureCache, scored: pd.DataFrame, tests: list[TestSet]) -> pd.DataFrame:
    """A fitted head's scores of the scored rows (and of every test set's rows). Their features are read here,
    after the fit, a block at a time: the fit's working copies and the scored rows are never held at once."""
    proba, = scored_probabilities([result.head], cache, scored)
    return scores_with_tests(scored, proba, dataset_name(cache.path), tests,
                             lambda test: test_probabilities(result.head, test))
