"""The extraction stage, split as reader -> mapper -> writer (after clip-retrieval):

reader (`extract.reader`): a DataLoader whose workers decode images;
mapper (here): the model, batched, in inference mode;
writer (`extract.chunks`): finished chunks saved atomically under `<out>.parts/`, then one cache file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from clipforensics.core.progress import progress

from clipforensics.core.errors import UserError
from clipforensics.core.identity import check, declare
from clipforensics.core.io import claim_output_file
from clipforensics.core.sampling import spread
from clipforensics.core.settings import to_dict
from clipforensics.data import cache as cache_mod
from clipforensics.data.crops import read_crop_recipe
from clipforensics.data.fingerprint import check_unchanged, frame_stats, stats_hash
from clipforensics.data.layouts import scan
from clipforensics.data.manifest import ManifestSettings, manifest_hash
from clipforensics.extract.chunks import ChunkCollector, ChunkStore, assemble, output_lock, plan_batches
from clipforensics.core.shards import Shard, current_shard
from clipforensics.extract.distributed import init_process_group
from clipforensics.extract.encoders import load_model
from clipforensics.extract.models import LoadedModel, torch_threads
from clipforensics.extract.settings import ExtractSettings, ModelSettings
from clipforensics.extract.prompts import PROMPT_SETS, embeddable
from clipforensics.extract.layers import BlockTaps, layer_key, parse_layers, vision_blocks
from clipforensics.extract.perturb import Perturbation, parse_perturbations, perturbation_key
from clipforensics.extract.reader import ImageFiles, collate_images, describe_preprocessing


CACHE_SUFFIXES = (".h5", ".hdf5")
LISTED = ("prompt_sets", "layers", "perturbations")
CACHE_IDENTITY = cache_mod.IDENTITY_KEYS + LISTED + ("perturb_seed",)
"""What a finished cache at --out must share with this run to be kept (the chunk size and preprocessing text only
shape the parts; changed frames are named one by one by `check_unchanged`)."""


def spread_rows(df: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """At most `limit` rows, evenly spread so that every class and video range is represented."""
    if limit is None or limit >= len(df):
        return df
    if limit < 1:
        raise UserError("--max-images must be at least 1")
    keep = spread(len(df), limit)
    return df.iloc[keep].reset_index(drop=True)


def preprocessing(loaded: LoadedModel) -> str:
    return describe_preprocessing(loaded.pixels, loaded.image_size, loaded.identity["mean"], loaded.identity["std"])


def embed_prompts(loaded: LoadedModel, names: tuple[str, ...]) -> dict[str, cache_mod.PromptEmbeddings]:
    """All prompt sets in one text forward, on one thread: tiny ops gain nothing from a second
    thread and lose a lot waiting for it on a busy machine."""
    if not names:  # an image-only encoder, or --prompt-sets ''
        return {}
    sets = [PROMPT_SETS.get(name) for name in names]
    texts = [t for ps in sets for t in ps.texts]
    with torch_threads(1):
        emb = loaded.encode_texts(texts).numpy()
    out, start = {}, 0
    for ps in sets:
        end = start + len(ps.texts)
        out[ps.name] = cache_mod.PromptEmbeddings(list(ps.texts), emb[start:end], np.array(ps.labels))
        start = end
    return out


def extract(manifest_settings: ManifestSettings, model_settings: ModelSettings,
            settings: ExtractSettings, extra_attrs: dict[str, Any] | None = None, merge: bool = False) -> Path | None:
    """Run (or resume) one extraction and return the cache path (None for a shard that does not assemble).

    One process does everything. Under torchrun each rank does its chunks and rank 0 assembles; with
    `--shard K/N` a job does its chunks only, and `merge=True` assembles once every shard is done.
    `extra_attrs` are recorded in the cache too (e.g. the LoRA stage links its cache to the base cache);
    they may add attributes but never replace one that identifies the embeddings.
    """
    clash = set(extra_attrs or {}) & set(cache_mod.IDENTITY_KEYS)
    if clash:
        raise ValueError(f"extra_attrs may not override identity attributes: {sorted(clash)}")
    out = claim_output_file(settings.out, inputs=[("--data-root", manifest_settings.data_root)],
                            suffixes=CACHE_SUFFIXES)
    for name in settings.prompt_sets:
        PROMPT_SETS.get(name)
    if settings.batch_size < 1 or settings.chunk_size < 1 or settings.workers < 0:
        raise UserError("--batch-size and --chunk-size must be positive, --workers non-negative")
    perturbations = parse_perturbations(settings.perturb)
    if settings.perturb_seed < 0:  # numpy's seed sequences take non-negative integers only
        raise UserError(f"--perturb-seed must be a non-negative integer, not {settings.perturb_seed}")
    shard = Shard() if merge else current_shard(settings.shard)
    manifest = spread_rows(scan(manifest_settings), settings.max_images)
    stats = frame_stats(manifest_settings.data_root, manifest["path"].tolist())
    loaded = load_agreed(model_settings, shard, init_process_group(shard, settings.device), settings.precision)
    settings = dataclasses.replace(settings, prompt_sets=embeddable(settings.prompt_sets, loaded.has_text,
                                                                    model_settings.model))
    layers = parse_layers(settings.layers, len(vision_blocks(loaded.model))) if settings.layers is not None else ()
    model = {k: loaded.identity[k] for k in cache_mod.IDENTITY_KEYS if k in loaded.identity}
    inputs = {**model, "manifest_hash": manifest_hash(manifest), "preprocessing": preprocessing(loaded),
              "frames_hash": stats_hash(manifest["path"].tolist(), stats),
              "crops": read_crop_recipe(manifest_settings.data_root)}  # prepare.json: the crops are identity
    identity = declare(settings, resolved={"layers": list(layers), "perturb": [p.name for p in perturbations]},
                       inputs=inputs)
    job = Job(out, ChunkStore(out), loaded, manifest, stats, identity, manifest_settings, model_settings, settings,
              {**identity, **(extra_attrs or {})}, layers, perturbations)
    try:
        if merge:
            return _merge(job)
        return _run_single(job) if shard.single else _run_shard(job, shard)
    finally:
        shard.leave()


def load_agreed(model_settings: ModelSettings, shard: Shard, device: str, precision: str) -> LoadedModel:
    """torchrun ranks all run at rank 0's precision: `auto` resolved on each rank could disagree
    (a calibration is a timing), and the ranks' chunks must come from one model."""
    if not shard.torchrun or precision != "auto":
        return load_model(model_settings, device, precision)
    loaded = load_model(model_settings, device, precision) if shard.leader else None
    chosen, reason = shard.broadcast((loaded.precision, loaded.precision_reason) if loaded else None)
    if loaded is None:
        loaded = load_model(model_settings, device, chosen)
        loaded.precision_reason = f"rank 0 chose: {reason}"
    return loaded


@dataclass
class Job:
    """Everything one extraction needs, passed around as one value."""

    out: Path
    store: ChunkStore
    loaded: LoadedModel
    manifest: pd.DataFrame
    file_stats: np.ndarray
    identity: dict[str, Any]
    manifest_settings: ManifestSettings
    model_settings: ModelSettings
    settings: ExtractSettings
    attrs: dict[str, Any]
    layers: tuple[int, ...] = ()
    perturbations: tuple[Perturbation, ...] = ()

    @property
    def n_chunks(self) -> int:
        return -(-len(self.manifest) // self.settings.chunk_size)


def _run_single(job: Job) -> Path:
    with output_lock(job.out):
        if _already_done(job):
            return job.out
        job.store.start(job.identity, job.settings.overwrite)
        _run_chunks(job, range(job.n_chunks))
        return _assemble(job)


def _run_shard(job: Job, shard: Shard) -> Path | None:
    """One rank / array job: its own chunks, each file atomic; torchrun's rank 0 then assembles."""
    if _already_done(job):
        return job.out
    with output_lock(job.out, shard):
        if shard.leader:
            job.store.start(job.identity, job.settings.overwrite)
        shard.barrier()
        if not shard.leader or not shard.torchrun:
            job.store.start(job.identity, overwrite=False)
        _run_chunks(job, [k for k in range(job.n_chunks) if shard.owns(k)])
        job.store.mark_shard_done(shard)
    shard.barrier()
    if shard.torchrun and shard.leader:
        with output_lock(job.out):
            return _assemble(job)
    if not shard.torchrun:
        print(f"shard {shard.rank}/{shard.world} done; when all are, run `extract_features.py merge` "
              "with the same options", file=sys.stderr)
    return None


def _merge(job: Job) -> Path:
    """Assemble the shards' chunks; refuse a set that is incomplete or made with other settings."""
    with output_lock(job.out):
        if _already_done(job):
            return job.out
        job.store.check(job.identity)
        missing = sorted(set(range(job.n_chunks)) - job.store.done())
        if missing:
            raise UserError(f"cannot merge {job.out}: {len(missing)} of {job.n_chunks} chunks missing "
                            f"(first: {missing[:5]}); finish every --shard K/N first")
        return _assemble(job)


def _already_done(job: Job) -> bool:
    """Whether `--out` already holds this very cache (nothing to do), decided the same way in every mode.

    A cache made with other settings, or from frames that changed since, is refused unless --overwrite;
    a file at `--out` that is not a clipforensics cache is never replaced, --overwrite or not.
    """
    out = job.out
    if not out.exists():
        return False
    try:
        attrs = cache_mod.read_attrs(out)
    except UserError as exc:
        raise UserError(f"{exc}; refusing to replace it (remove it yourself if it is yours)") from None
    if job.settings.overwrite:
        return False
    recorded = {**attrs, **{key: attrs.get(key) or [] for key in LISTED}}  # older caches recorded no empty lists
    check(recorded, job.identity, f"existing cache {out}", keys=CACHE_IDENTITY)
    stored = cache_mod.read_file_stats(out)
    if stored is not None:
        paths, stats = stored
        check_unchanged(job.manifest_settings.data_root, paths, stats, what=f"the existing cache {out}",
                        fix="rerun with --overwrite to re-extract")
    job.store.remove_leftover(job.identity)
    print(f"{out} is already complete with these settings: nothing to do", file=sys.stderr)
    return True


def _run_chunks(job: Job, chunks: Iterable[int]) -> None:
    n, settings, loaded = len(job.manifest), job.settings, job.loaded
    chunks = list(chunks)
    todo = sorted(set(chunks) - job.store.done())
    if not todo:
        return
    batches = plan_batches(todo, n, settings.chunk_size, settings.batch_size)
    dataset = ImageFiles(Path(job.manifest_settings.data_root), job.manifest["path"].tolist(), loaded.pixels,
                         loaded.image_size, uint8=True, perturbations=job.perturbations,
                         seed=settings.perturb_seed)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=settings.workers, collate_fn=collate_images,
                        pin_memory=loaded.device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if settings.workers else None)
    remaining = sum(len(b) for b in batches)
    if len(todo) < len(chunks):
        print(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already done", file=sys.stderr)
    taps = BlockTaps(loaded.model, job.layers) if job.layers else None
    with ChunkCollector(job.store, n, settings.chunk_size) as collector, \
            progress(total=remaining, unit="img", desc="extract") as bar:
        for images, idx, reasons in loader:
            embeddings, extras = encode_batch(job, taps, images)
            collector.add(idx, embeddings, reasons, extras)
            bar.update(len(idx))


def encode_batch(job: Job, taps: BlockTaps | None, images: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The final embeddings (block tokens tapped in the same forward), then each perturbed copy's."""
    clean = images[:, 0] if job.perturbations else images
    with taps.capture() if taps else contextlib.nullcontext():
        embeddings = job.loaded.encode_images(clean).numpy()
    extras = {layer_key(k): t for k, t in taps.tokens().items()} if taps else {}
    for j, p in enumerate(job.perturbations):
        extras[perturbation_key(p)] = job.loaded.encode_images(images[:, 1 + j]).numpy()
    return embeddings, extras


def _assemble(job: Job) -> Path:
    run_settings = {"manifest": to_dict(job.manifest_settings), "model": to_dict(job.model_settings),
                    "extract": to_dict(job.settings)}
    attrs = {**job.loaded.identity, **job.attrs,
             "data_root": str(Path(job.manifest_settings.data_root).resolve()),
             "device": str(job.loaded.device), "precision_reason": job.loaded.precision_reason,
             "settings": run_settings}
    return assemble(job.out, job.store, job.n_chunks, job.manifest, attrs,
                    lambda: embed_prompts(job.loaded, job.settings.prompt_sets), job.file_stats)


def summarize(cache: cache_mod.FeatureCache) -> str:
    """A few lines a person reads after extraction: what is in the cache and how it was made."""
    a = cache.attrs
    counts = cache.manifest.groupby("manipulation").agg(videos=("video", "nunique"), frames=("path", "size"))
    random = " (RANDOM WEIGHTS: the machinery, not detection skill)" if a.get("random_weights") else ""
    lines = [f"cache {cache.path}: {len(cache.embeddings)} images x {cache.embeddings.shape[1]} dims "
             f"({cache.embeddings.dtype}), {len(cache.failed)} failed",
             f"model {a['model']} / {a['pretrained']}{random} at {a['image_size']} px, {a['precision']}, "
             f"manifest {a['manifest_hash']}, prompt sets {', '.join(cache.prompts)}"]
    if a.get("layers") or a.get("perturbations"):
        lines.append(f"block tokens of layers {a.get('layers') or []}; perturbed copies {a.get('perturbations') or []}")
    lines.append("classes: " + ", ".join(f"{name} {row.videos} videos ({row.frames} frames)"
                                         for name, row in counts.iterrows()))
    return "\n".join(lines)

