"""The layer sweep: each trained head fitted on each stored block token and on the final embedding.

RINE and ForensicsAdapter fix which CLIP blocks they read; with every block's class token in the cache
(`extract_features.py --layers all`), choosing it is a loop of head fits. Each fit scores a scores table of the
validation and test rows, measured by the shared evaluator, so a sweep's AUCs and intervals are the ones
`evaluate.py` would report. The test AUC of every layer is shown beside its validation AUC, but only
validation picks the layer a user should report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.io import claim_output, write_json
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.data.provenance import check_lora_overlap
from clipforensics.data.scores import make_scores
from clipforensics.evaluate.evaluation import evaluate_run
from clipforensics.evaluate.settings import MeasureSettings
from clipforensics.heads.features import features, scored_probabilities, scored_split
from clipforensics.heads.heads import fit_head, resolve_heads
from clipforensics.heads.folder import RUN_FILE, STAGE, SWEEP_FILES, SWEEP_RECORD, refuse_other_study
from clipforensics.heads.layers import PROMPT_HEADS, layer_view
from clipforensics.measure.metrics import evaluate_split
from clipforensics.report.layers import write_sweep_report

FINAL = "final"


def sweep_heads(heads: tuple[str, ...], cache: FeatureCache) -> list[str]:
    """The trained heads among `heads` ('all': every trained head); prompt heads are left out, and a list of
    prompt heads only is refused rather than swept with a head nobody asked for."""
    names = [h for h in resolve_heads(heads, cache.prompts) if not h.startswith(PROMPT_HEADS)]
    if not names:
        raise UserError(f"--layer-sweep fits trained heads (logreg, svm, ridge, real-only) on block tokens; "
                        f"--heads {','.join(heads)} names prompt heads only, which need the final embedding")
    return names


def check_sweep_options(layer: str | None, test_caches: tuple[str, ...] | list[str]) -> None:
    """Options a sweep cannot honour are refused, not dropped: it fits every layer on this cache alone."""
    if layer is not None:
        raise UserError("--layer-sweep fits every stored layer; drop --layer (or drop --layer-sweep)")
    if test_caches:
        raise UserError("--layer-sweep scores this cache's test rows only; drop --test-cache")


def layer_views(cache: FeatureCache) -> Iterator[tuple[str, FeatureCache]]:
    """Every stored block in order, then the final embedding, each as the cache a head is fitted on."""
    for k in sorted(cache.layers):
        yield str(k), layer_view(cache, str(k))
    yield FINAL, cache


def _aucs(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sweep's columns of one test set, as the evaluator measured them."""
    video = result["video"]
    return {"frame_auc": result["frame"]["auc"], "video_auc": video["auc"], "video_auc_ci": video["auc_ci"]}


def measure_scores(name: str, scores: pd.DataFrame, measure: MeasureSettings) -> dict[str, Any]:
    """Validation AUCs (which pick the layer) and, per test set ('all', then all reals against each test
    manipulation when there are several), frame and video AUC with the video interval: every number from the
    evaluator, the test rows through `evaluate_run`, the validation rows through the split measure it wraps."""
    result = evaluate_run(name, scores, measure)
    val = evaluate_split(scores[scores["split"] == "val"], threshold=result.threshold, video_agg=measure.video_agg,
                         n_boot=0)
    tests = {"all": result.metrics, **result.per_manipulation}
    return {"val_video_auc": val["video"]["auc"], "val_frame_auc": val["frame"]["auc"],
            "test": {test_set: _aucs(metrics) for test_set, metrics in tests.items()}}


def fit_layer(layer: str, view: FeatureCache, rows: pd.DataFrame, names: list[str],
              measure: MeasureSettings) -> list[dict[str, Any]]:
    """One record per head fitted on this layer's features: its scores table measured by the evaluator.

    The layer's rows are read from the cache here (data/stored.py) when a head uses them, and dropped before the
    scored rows are read and scored a block at a time: at most one layer's rows in memory, not the stack."""
    train, val = features(view, rows, "train"), features(view, rows, "val")
    results = [fit_head(name, {}, train, val) for name in names]
    del train, val
    scored = scored_split(rows)
    records = []
    probas = scored_probabilities([result.head for result in results], view, scored)
    for name, result, proba in zip(names, results, probas):
        scores = make_scores(scored, proba)
        measured = measure_scores(f"{name} on layer {layer}", scores, measure)
        records.append({"layer": layer, "head": name, "fit_seconds": result.seconds, **measured})
        print(f"layer {layer:>5} {name:>10}: val video AUC {measured['val_video_auc']:.3f}", file=sys.stderr)
    return records


def sweep(cache_path: str, heads: tuple[str, ...], protocol: ProtocolSettings, out: Path,
          measure: MeasureSettings | None = None, overwrite: bool = False) -> list[dict[str, Any]]:
    """Fit each trained head on each stored layer (and the final embedding); one record per (layer, head),
    written as layer_sweep.json beside the report's table and figure."""
    run_dir = claim_output(out, stage=STAGE, inputs=[("--cache", cache_path)])
    cache = read_cache(cache_path, layers=True)
    if not cache.layers:
        raise UserError(f"{cache_path} stores no block tokens; re-extract with --layers all")
    names = sweep_heads(heads, cache)
    splits = make_splits(cache.manifest, protocol)
    check_lora_overlap(cache.attrs, splits.rows, str(cache.path))
    identity = {"cache": str(cache.path.resolve()), "cache_identity": cache.identity(), "splits": splits.digest()}
    for recorded in (SWEEP_RECORD, RUN_FILE):
        if refuse_other_study(run_dir, recorded, identity, overwrite):
            break
    measure = measure or MeasureSettings()
    records = [record for layer, view in layer_views(cache)
               for record in fit_layer(layer, view, splits.rows, names, measure)]
    run_dir.own(*SWEEP_FILES)
    table = write_sweep_report(run_dir.path, records)
    write_json(run_dir.path / SWEEP_RECORD, {**identity, "heads": names, "rows": records})
    print(table)
    return records
