"""The fine-tuning stage: adapt CLIP's image tower by a method (`--method`, lora/methods/) on a base cache's frames,
select the epoch on validation, re-extract.

Model, weights, image size, prompts and data root come from the base cache, so the two cannot drift. In --out, the
same for every method: checkpoint.pt (every epoch; the same command resumes), the method's change (best epoch:
adapter/ for LoRA and DoRA, layernorm.safetensors, ...), head.safetensors, lora.json (method, settings, parameter
counts), train_log.csv, scores.csv + scores.json (val and test rows, for evaluate.py) and merged.safetensors (the
whole model under open_clip's names); beside the base cache, NAME-lora-<change hash>.h5: the merged model's
embeddings, for the heads and the cross-manipulation matrix. The stage renders nothing: finetune_lora.py draws
train_curve.png from train_log.csv.
The run folder's file names are clipforensics.runs's, which readers (detect.py, the studies) open it through.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import pandas as pd
import peft
import torch
from clipforensics.core.progress import progress

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, atomic_path, claim_output, claim_output_file, write_json
from clipforensics.core.settings import from_dict, to_dict
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.fingerprint import check_unchanged
from clipforensics.data.crossdata import TestSet, check_disjoint, dataset_name, load_test_sets, scores_with_tests
from clipforensics.data.layouts import scan
from clipforensics.data.manifest import ManifestSettings, manifest_hash
from clipforensics.data.protocol import CrossSettings, ProtocolSettings, Splits, log_splits, make_splits
from clipforensics.data.provenance import check_lora_overlap, provenance_of, run_identity
from clipforensics.data.splitfile import TABLE_NAME, write_split_table
from clipforensics.data.scores import write_scores
from clipforensics.extract.models import LoadedModel, precision_chosen_by, resolve_device, resolve_precision
from clipforensics.extract.run import extract, spread_rows
from clipforensics.extract.settings import ExtractSettings, ModelSettings
from clipforensics.lora.checkpoint import (CHECKPOINT, HEAD_SHA, MERGED_SHA, refuse_other_checkpoint, resume_or_start,
                                           save_change, save_checkpoint, save_head_tensors, save_merged)
from clipforensics.lora.data import LabelledImages
from clipforensics.lora.model import check_settings, describe_counts, parameter_counts
from clipforensics.lora.distributed import current_ranks, joined
from clipforensics.lora.selection import SELECTIONS
from clipforensics.lora.settings import LoraSettings, checkpoint_identity
from clipforensics.lora.train import (LOG, TrainRun, TrainState, make_optimization, predict, start_training,
                                      training_precision, train_epoch, validate, write_log)
from clipforensics.core.paths import sha256_file
from clipforensics.lora.files import CURVE, HEAD_FILE, RUN_FILE
from clipforensics.extract.tower import load_tower, model_settings

MERGED = "merged.safetensors"
OUTPUTS = (CHECKPOINT, LOG, HEAD_FILE, RUN_FILE, CURVE, MERGED, "scores.csv", "scores.json", TABLE_NAME)
"""Every entry the stage writes into --out besides the method's change (recorded before training, so --overwrite
removes exactly these)."""


@dataclass
class Base:
    """The base cache and the settings that made it: everything the LoRA run must reproduce."""

    cache: FeatureCache
    made_with: dict[str, Any]

    @classmethod
    def read(cls, path: str) -> "Base":
        cache = read_cache(path)
        made_with = cache.attrs.get("settings")
        if not isinstance(made_with, dict) or not {"manifest", "model", "extract"} <= set(made_with):
            raise UserError(f"{path} does not record the settings it was extracted with; re-extract it")
        return cls(cache, made_with)

    @property
    def attrs(self) -> dict[str, Any]:
        return self.cache.attrs

    def model_settings(self, pretrained: str | None = None) -> ModelSettings:
        return model_settings(self.attrs, pretrained, what=str(self.cache.path))

    def manifest_settings(self, data_root: str | None) -> ManifestSettings:
        recorded = from_dict(ManifestSettings, self.made_with["manifest"])
        return dataclasses.replace(recorded, data_root=data_root or self.attrs["data_root"])

    def extract_settings(self) -> ExtractSettings:
        return from_dict(ExtractSettings, self.made_with["extract"])  # caches made before --limit's rename too


def check_data_root(base: Base, manifest_settings: ManifestSettings) -> None:
    """The frames under the data root must be the very frames the base cache was made from."""
    frames = spread_rows(scan(manifest_settings), base.extract_settings().max_images)
    found, expected = manifest_hash(frames), base.attrs["manifest_hash"]
    if found != expected:
        raise UserError(f"data root {manifest_settings.data_root} does not hold the frames {base.cache.path} was "
                        f"made from (manifest {found} != {expected}); pass the right --data-root")
    if base.cache.file_stats is not None:
        check_unchanged(manifest_settings.data_root, base.cache.manifest["path"].tolist(), base.cache.file_stats,
                        what=f"the base cache {base.cache.path}",
                        fix="re-extract the base cache (a copy made without keeping file times reads as changed: "
                            "copy with cp -p or rsync -a)")


def claim_outputs(settings: LoraSettings, base: Base, data_root: str, test_caches: tuple[str, ...] = ()) -> OutputDir:
    """Every place the stage will write, checked before any model is loaded or epoch trained: the run folder
    (owned, apart from its inputs), the merged checkpoint file and the folder of the re-extracted cache."""
    inputs = [("--base-cache", str(base.cache.path)), ("--data-root", data_root),
              *(("--test-cache", c) for c in test_caches)]
    run_dir = claim_output(settings.out, stage="finetune_lora", inputs=inputs)
    run_dir.remove_stale_temps()
    if settings.merge_out:
        claim_output_file(settings.merge_out, inputs=[*inputs, ("--out", settings.out)],
                          suffixes=(".safetensors",), flag="--merge-out")
    if settings.extract:
        folder = Path(settings.cache_out) if settings.cache_out else base.cache.path.parent
        claim_output_file(folder / f"{base.cache.path.stem}-lora.h5", inputs=[("--data-root", data_root)],
                          flag="--cache-out")
    return run_dir


def training_rows(rows: pd.DataFrame, settings: LoraSettings) -> pd.DataFrame:
    train = spread_rows(rows[rows["split"] == "train"], settings.max_train_images)
    val = rows[rows["split"] == "val"]
    for split, part in (("train", train), ("validation", val)):
        if part["label"].nunique() < 2:
            raise UserError(f"the {split} split needs real and fake videos (the epoch is chosen on validation); "
                            "check the protocol flags (--real-split, --split-seed) and --max-train-images")
    return train


def load_base_model(base: Base, device: str) -> LoadedModel:
    """The base model rebuilt from the cache's attributes, in fp32 for training, checked against the cache."""
    why = f"fine-tuning trains fp32 weights; the re-extraction runs at the base cache's {base.attrs['precision']}"
    with precision_chosen_by(why):
        return load_tower(base.attrs, device, "fp32", str(base.cache.path))


@dataclass
class Elsewhere:
    """Another data set the LoRA run is tested on: its test rows and the base it is re-extracted from."""

    test: TestSet
    base: Base

    @property
    def data_root(self) -> str:
        return str(self.base.attrs["data_root"])


def load_elsewhere(base: Base, cross: CrossSettings | None, frames_per_video: int | None) -> list[Elsewhere]:
    """Every --test-cache, checked like the base: same features, settings recorded, frames still in place."""
    found = []
    for test in load_test_sets(base.cache, cross, frames_per_video) if cross else []:
        other = Base.read(str(test.cache.path))
        check_data_root(other, other.manifest_settings(None))
        found.append(Elsewhere(test, other))
    return found


def prepare(settings: LoraSettings, protocol: ProtocolSettings,
            cross: CrossSettings | None = None) -> tuple[TrainRun, Base, Splits, list[Elsewhere], OutputDir | None]:
    """Everything checked and loaded, cheapest checks first; returns the run, the base, the split rows, the
    other data sets to test on and the run folder."""
    check_settings(settings)
    base = Base.read(settings.base_cache)
    manifest_settings = base.manifest_settings(settings.data_root)
    run_dir = (claim_outputs(settings, base, manifest_settings.data_root, cross.test_cache if cross else ())
               if current_ranks().leader else None)  # torchrun: rank 0 alone writes the run folder
    check_data_root(base, manifest_settings)
    elsewhere = load_elsewhere(base, cross, protocol.frames_per_video)
    device = resolve_device(settings.device)
    training_precision(settings.train_precision, device)
    if settings.extract:
        resolve_precision(base.attrs["precision"], device)
    splits = make_splits(base.cache.manifest, protocol)
    check_lora_overlap(base.attrs, splits.rows, str(base.cache.path))
    lora = checkpoint_identity(settings)  # a checkpoint resumes across where / how fast the run goes
    identity = {**run_identity(base.cache, protocol), "splits": splits.digest(), "lora": lora}
    if run_dir:
        refuse_other_checkpoint(identity, run_dir, settings.overwrite)
    log_splits(splits, brief=True)
    rows = splits.rows
    for other in elsewhere:
        check_disjoint(rows, other.test)
        print(other.test.summary(), file=sys.stderr)
    train = training_rows(rows, settings)
    loaded = load_base_model(base, settings.device)
    run = TrainRun.build(loaded, settings, manifest_settings.data_root, train, val_rows=rows[rows["split"] == "val"],
                         identity=identity)
    print(describe_counts(parameter_counts(run.detector), run.detector), file=sys.stderr)
    return run, base, splits, elsewhere, run_dir


def train_epochs(run: TrainRun, run_dir: OutputDir | None) -> TrainState:
    """Train (or resume) to the last epoch, validating and checkpointing after each; return the final state."""
    optim = make_optimization(run)
    state = start_training(run, optim, lambda: resume_or_start(run, optim, run_dir))
    if run_dir:
        run_dir.own(*OUTPUTS, Path(run.detector.method.change_file).parts[0])
    epochs = range(state.epoch + 1, run.settings.epochs + 1)
    with progress(epochs, desc=run.detector.method.title, unit="epoch", enabled=run.ranks.leader) as bar:
        bar.set_postfix(val_video_auc=f"{state.history[-1]['val_video_auc']:.3f}")
        for epoch in bar:
            row = {"epoch": epoch, **train_epoch(run, optim, epoch), **validate(run)}
            state.record(row, run.detector, run.settings.select)
            if run.ranks.leader:
                save_checkpoint(run, optim, state)
                write_log(run.out / LOG, state.history)
            bar.set_postfix(loss=f"{row['loss']:.4f}", val_video_auc=f"{row['val_video_auc']:.3f}",
                            best=state.best_epoch)
    return state


def write_scores_table(run: TrainRun, base: Base, rows: pd.DataFrame, state: TrainState,
                       protocol: ProtocolSettings, elsewhere: list[Elsewhere] = ()) -> None:
    """Val and test rows (and every other data set's test rows, from its own data root) scored by the best
    epoch's model, in the table every scorer writes."""
    scored = rows[rows["split"].isin(["val", "test"])]
    probs = predict(run, LabelledImages.of(run.data_root, scored))
    roots = {other.test.name: other.data_root for other in elsewhere}
    table = scores_with_tests(scored, probs, dataset_name(base.cache.path), [other.test for other in elsewhere],
                              lambda test: predict(run, LabelledImages.of(roots[test.name], test.rows)))
    meta = {**run_identity(base.cache, protocol), "scorer": "lora", "name": run.out.name,
            "objective": run.settings.objective, "data_root": str(run.data_root), "best_epoch": state.best_epoch,
            "selected_on": SELECTIONS.get(run.settings.select).description,
            "package_version": __version__}
    if elsewhere:
        meta["test_sets"] = [other.test.record() for other in elsewhere]
    write_scores(run.out, table, meta)


def head_meta(settings: LoraSettings) -> dict[str, Any]:
    """head.safetensors' metadata: the kind of head the objective trained (`head`, read back by SAVED_HEADS)."""
    return {"head": settings.objective, "classes": ["real", "fake"],
            "prompt_set": settings.prompt_set if settings.objective == "prompt" else None}


def copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target, suffix=target.suffix) as tmp:
        shutil.copyfile(source, tmp)


def reextract(run: TrainRun, base: Base, merged: Path, adapter_sha: str, provenance: dict[str, Any],
              data_root: str | None = None) -> Path:
    """The data root through the merged model, with the base cache's precision, prompts, --max-images and manifest;
    `provenance` (the protocol, train and val videos) lets every later reader refuse a leaking protocol.
    For another data set's cache, `data_root` is its own (recorded) data root."""
    s = run.settings
    folder = Path(s.cache_out) if s.cache_out else base.cache.path.parent
    extract_settings = dataclasses.replace(
        base.extract_settings(), out=str(folder / f"{base.cache.path.stem}-lora-{adapter_sha[:10]}.h5"),
        device=s.device, precision=base.attrs["precision"], workers=s.workers, batch_size=s.batch_size,
        overwrite=False)
    links = {"base_cache": str(base.cache.path.resolve()), "base_manifest_hash": base.attrs["manifest_hash"],
             "base_pretrained": base.attrs["pretrained"], "adapter_sha": adapter_sha,
             "lora_run": str(run.out.resolve()), "random_weights": bool(base.attrs.get("random_weights", False)),
             **provenance}
    with precision_chosen_by(f"the base cache's precision ({base.cache.path})", say=False):
        return extract(base.manifest_settings(data_root or str(run.data_root)),
                       base.model_settings(str(merged.resolve())), extract_settings, extra_attrs=links)


def write_outputs(run: TrainRun, base: Base, splits: Splits, state: TrainState,
                  protocol: ProtocolSettings, elsewhere: list[Elsewhere] = ()) -> dict[str, Any]:
    """Everything of the best epoch: scores, splits.csv, the method's change, head, log, merged weights, new cache,
    lora.json."""
    s, out, rows = run.settings, run.out, splits.rows
    write_split_table(out, splits.table())
    counts = parameter_counts(run.detector)
    run.detector.load_trainable_state(state.best)
    write_scores_table(run, base, rows, state, protocol, elsewhere)
    adapter_sha = sha256_file(save_change(run.detector, out))
    head_sha = sha256_file(save_head_tensors(run.detector.head, out / HEAD_FILE, head_meta(s)))
    write_log(out / LOG, state.history)
    merged = save_merged(run.detector, out / MERGED)
    if s.merge_out:
        copy_atomic(merged, Path(s.merge_out))
    provenance = provenance_of(to_dict(protocol), splits.digest(), rows, str(out.resolve())).attrs()
    cache = reextract(run, base, merged, adapter_sha, provenance) if s.extract else None
    other_caches = {other.test.name: str(reextract(run, other.base, merged, adapter_sha, provenance,
                                                   other.data_root).resolve())
                    for other in elsewhere} if s.extract else {}
    summary = {"base": {"cache": str(base.cache.path.resolve()), **base.cache.identity(),
                        "weights_kind": base.attrs.get("weights_kind"), "data_root": base.attrs.get("data_root")},
               "method": s.method, "protocol": to_dict(protocol), "settings": to_dict(s),
               "data_root": str(run.data_root), "split_file_absent": splits.absent or None,
               "parameters": counts, "best_epoch": state.best_epoch, "best": state.best_row,
               "untrained": state.history[0], "adapter_sha": adapter_sha, HEAD_SHA: head_sha,
               "merged": str(merged), MERGED_SHA: sha256_file(merged),
               "lora_cache": str(cache.resolve()) if cache else None,  # readers may run from another folder
               "test_sets": [other.test.record() for other in elsewhere], "test_set_caches": other_caches,
               "training_seconds": sum(row["seconds"] for row in state.history), "world_size": run.ranks.world,
               "versions": {"clipforensics": __version__, "torch": torch.__version__, "peft": peft.__version__,
                            "open_clip": open_clip.__version__}}
    write_json(out / RUN_FILE, summary)
    return summary


def finetune(settings: LoraSettings, protocol: ProtocolSettings, cross: CrossSettings | None = None) -> dict[str, Any]:
    with joined(settings.device) as ranks:  # torchrun: every rank trains, rank 0 alone writes
        settings = dataclasses.replace(settings, device=ranks.device)
        run, base, splits, elsewhere, run_dir = prepare(settings, protocol, cross)
        state = train_epochs(run, run_dir)
        return ranks.leader_alone(lambda: write_outputs(run, base, splits, state, protocol, elsewhere))


def summary_text(summary: dict[str, Any]) -> str:
    """What the command prints when done: the selected epoch against the untrained model, and where things went."""
    best, untrained = summary["best"], summary["untrained"]
    lines = [f"best epoch {summary['best_epoch']} of {summary['settings']['epochs']}: val video AUC "
             f"{best['val_video_auc']:.3f} (frame {best['val_frame_auc']:.3f}); untrained: "
             f"{untrained['val_video_auc']:.3f} (frame {untrained['val_frame_auc']:.3f})",
             f"run {summary['settings']['out']}  adapter sha256 {summary['adapter_sha'][:16]}"]
    if summary["lora_cache"]:
        lines.append(f"LoRA cache {summary['lora_cache']}")
    for name, path in (summary.get("test_set_caches") or {}).items():
        lines.append(f"LoRA cache of test data set {name}: {path}")
    return "\n".join(lines)
