"""Heads on stored block tokens: one layer, a concatenation, or a sweep over every stored layer.

RINE and ForensicsAdapter fix which CLIP blocks they read; with every block's class token in the cache
(`extract_features.py --layers all`), choosing it is a loop of head fits. The sweep reports the test
AUC of every layer beside its validation AUC, but only validation picks the layer a user should report.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, claim_output, write_json, write_text
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.data.provenance import check_lora_overlap
from clipforensics.data.scores import make_scores
from clipforensics.measure.metrics import bootstrap_ci, frame_video_auc, roc_auc, video_scores
from clipforensics.heads.heads import Features, fit_head, resolve_heads
from clipforensics.report.layers import plot_sweep, sweep_report_table, sweep_table
from clipforensics.report.tables import to_markdown

FINAL = "final"
PROMPT_HEADS = ("zeroshot-", "prompt-features")
SWEEP_FILES = ("layer_sweep.csv", "layer_sweep.md", "layer_sweep.json", "layer_sweep.png")
SWEEP_IDENTITY = ("cache", "cache_identity", "splits")  # what a sweep and a fit_heads run in one folder must share


def parse_layer_choice(spec: str, stored: list[int]) -> list[int]:
    """'K' | 'last' | 'concat:K,L' -> the stored blocks to read, refused by name when absent."""
    if not stored:
        raise UserError("this cache stores no block tokens; re-extract with --layers all (or e.g. 0,4,8)")
    text = spec[len("concat:"):] if spec.startswith("concat:") else spec
    try:
        keys = [max(stored) if part == "last" else int(part) for part in text.split(",") if part]
    except ValueError:
        raise UserError(f"--layer takes K, last or concat:K,L; got {spec!r}") from None
    if len(keys) > 1 and not spec.startswith("concat:"):
        raise UserError(f"--layer {spec}: write concat:{spec} to fit on several layers at once")
    if not keys:
        raise UserError(f"--layer {spec!r} names no layer; write K, last or concat:K,L")
    if len(set(keys)) < len(keys):
        raise UserError(f"--layer {spec}: a layer appears twice; concatenate distinct layers")
    missing = [k for k in keys if k not in stored]
    if missing:
        raise UserError(f"--layer {spec}: the cache stores layers {stored}, not {missing}")
    return keys


def layer_view(cache: FeatureCache, spec: str | None) -> FeatureCache:
    """The cache with its embeddings replaced by the chosen block tokens (prompts dropped: they live in
    the projected space, which intermediate tokens are not in)."""
    if spec is None:
        return cache
    keys = parse_layer_choice(spec, sorted(cache.layers))
    X = np.concatenate([cache.layers[k] for k in keys], axis=1)
    return dataclasses.replace(cache, embeddings=X, prompts={}, layers={})


def refuse_prompt_heads(names: list[str] | tuple[str, ...], spec: str) -> None:
    prompt = [n for n in names if n.startswith(PROMPT_HEADS)]
    if prompt:
        raise UserError(f"{prompt[0]} needs the final (projected) embedding; with --layer {spec} use trained heads "
                        "(logreg, svm, ridge, real-only)")


def _test_sets(scores: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """'all' test rows, then all reals against each test manipulation when there are several."""
    test = scores[scores["split"] == "test"]
    fakes = test.loc[test["label"] == 1, "manipulation"].unique()
    sets = {"all": test}
    if len(fakes) > 1:
        real = test[test["label"] == 0]
        sets.update({str(m): pd.concat([real, test[test["manipulation"] == m]]) for m in sorted(fakes)})
    return sets


def _measure(scores: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in _test_sets(scores).items():
        videos = video_scores(rows)
        ci = bootstrap_ci(videos["label"], videos["score"], videos["video"], n_boot=n_boot, seed=seed)["auc"]
        out[name] = {"frame_auc": roc_auc(rows["label"], rows["score"]),
                     "video_auc": roc_auc(videos["label"], videos["score"]), "video_auc_ci": list(ci)}
    return out


def sweep_heads(heads: tuple[str, ...], cache: FeatureCache) -> list[str]:
    """The trained heads among `heads` ('all': every trained head); prompt heads are left out, and a list of
    prompt heads only is refused rather than swept with a head nobody asked for."""
    names = [h for h in resolve_heads(heads, cache.prompts) if not h.startswith(PROMPT_HEADS)]
    if not names:
        raise UserError(f"--layer-sweep fits trained heads (logreg, svm, ridge, real-only) on block tokens; "
                        f"--heads {','.join(heads)} names prompt heads only, which need the final embedding")
    return names


def refuse_other_study(run_dir: OutputDir, recorded: str, identity: dict[str, Any], overwrite: bool) -> bool:
    """Refuse a folder whose `recorded` file (layer_sweep.json, run.json) was made from another cache or protocol
    unless --overwrite, which clears what fit_heads wrote there (True then): a sweep and a run of two studies never
    share a folder, and neither silently replaces the other."""
    if recorded not in run_dir.entries or not (run_dir.path / recorded).is_file():
        return False
    old = run_dir.read_record(recorded) or {}
    new = json.loads(json.dumps(identity))
    return replace_or_refuse(run_dir, recorded, old, [k for k in SWEEP_IDENTITY if old.get(k) != new.get(k)],
                             overwrite)


def replace_or_refuse(run_dir: OutputDir, recorded: str, old: dict[str, Any], differs: list[str],
                      overwrite: bool) -> bool:
    """The one rule for a fit_heads folder whose `recorded` file differs in `differs`: refused unless --overwrite,
    which clears what fit_heads wrote there (True then)."""
    if differs and not overwrite:
        raise UserError(f"{run_dir.path} holds {recorded} made from another cache or protocol ({old.get('cache')}; "
                        f"differs in {', '.join(differs)}); use another --out or --overwrite")
    if differs:
        run_dir.clear()
    return bool(differs)


def check_sweep_options(layer: str | None, test_caches: tuple[str, ...] | list[str]) -> None:
    """Options a sweep cannot honour are refused, not dropped: it fits every layer on this cache alone."""
    if layer is not None:
        raise UserError("--layer-sweep fits every stored layer; drop --layer (or drop --layer-sweep)")
    if test_caches:
        raise UserError("--layer-sweep scores this cache's test rows only; drop --test-cache")


def sweep(cache_path: str, heads: tuple[str, ...], protocol: ProtocolSettings, out: Path,
          n_boot: int = 1000, seed: int = 0, overwrite: bool = False) -> pd.DataFrame:
    """Fit each trained head on each stored layer (and the final embedding); one row per (layer, head)."""
    run_dir = claim_output(out, stage="fit_heads", inputs=[("--cache", cache_path)])
    cache = read_cache(cache_path, layers=True)
    if not cache.layers:
        raise UserError(f"{cache_path} stores no block tokens; re-extract with --layers all")
    names = sweep_heads(heads, cache)
    splits = make_splits(cache.manifest, protocol)
    check_lora_overlap(cache.attrs, splits.rows, str(cache.path))
    identity = {"cache": str(cache.path.resolve()), "cache_identity": cache.identity(), "splits": splits.digest()}
    for recorded in ("layer_sweep.json", "run.json"):
        if refuse_other_study(run_dir, recorded, identity, overwrite):
            break
    rows = splits.rows
    scored = rows[rows["split"].isin(("val", "test"))]
    records = []
    views = [(str(k), cache.layers[k]) for k in sorted(cache.layers)] + [(FINAL, cache.embeddings)]
    for layer, X in views:
        train, val = (Features.of(X, rows[rows["split"] == s]) for s in ("train", "val"))
        for name in names:
            result = fit_head(name, {}, train, val)
            scores = make_scores(scored, result.head.predict_proba(X[scored.index.to_numpy()].astype(np.float32)))
            val_frame, val_video = frame_video_auc(scores[scores["split"] == "val"])
            records.append({"layer": layer, "head": name, "val_video_auc": val_video, "val_frame_auc": val_frame,
                            "fit_seconds": result.seconds, "test": _measure(scores, n_boot, seed)})
            print(f"layer {layer:>5} {name:>10}: val video AUC {val_video:.3f}", file=sys.stderr)
    table = sweep_table(records)
    write_sweep(run_dir, table, records, {**identity, "heads": names})
    return table


def write_sweep(run_dir: OutputDir, table: pd.DataFrame, records: list[dict[str, Any]],
                identity: dict[str, Any]) -> None:
    """The sweep's files in the run folder (fit_heads' own: only these names are replaced)."""
    run_dir.own(*SWEEP_FILES)
    out = run_dir.path
    write_text(out / "layer_sweep.csv", table.to_csv(index=False))
    report_table = sweep_report_table(records)
    write_text(out / "layer_sweep.md", to_markdown(report_table))
    write_json(out / "layer_sweep.json", {**identity, "rows": records})
    plot_sweep(records, out / "layer_sweep.png")
    print(to_markdown(report_table))
