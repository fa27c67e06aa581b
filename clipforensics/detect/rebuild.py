"""Rebuild a trained detector from a run's own records: model, weights, preprocessing, head, threshold, face crops.

Nothing is taken from the command line that the run recorded: a head folder (`runs/NAME/logreg`) names its cache,
whose attributes say how the embeddings were made; a LoRA run (`runs/NAME-lora`) names its base cache, its adapter
(checked by sha256) and its head. Whatever cannot be rebuilt exactly (weights missing, fingerprint or preprocessing
differs, cache gone) is refused with one line, because a detector rebuilt "nearly" gives other scores silently.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from clipforensics.core.errors import UserError
from clipforensics.core.io import read_json_object, sidecar
from clipforensics.core.registry import Registry
from clipforensics.core.settings import from_dict
from clipforensics.data.cache import check_identity, read_attrs
from clipforensics.data.crops import PREPARE_FILE, read_crop_recipe
from clipforensics.measure.metrics import choose_threshold
from clipforensics.frames.align import ALIGNMENTS
from clipforensics.heads.fit import load_head
from clipforensics.frames.crops import CropRecipe
from clipforensics.frames.detectors import DETECTORS, file_sha256, model_file
from clipforensics.extract.models import (LoadedModel, ModelSettings, cast_model, load_model, resolve_device,
                                          resolve_precision)

RUN_PRECISION = "run"
# What identifies the weights and the pixels the model sees: all of it must match the run's cache.
MODEL_KEYS = ("model", "pretrained", "weights_fingerprint", "init_seed", "image_size")
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@dataclass(frozen=True)
class FaceCrop:
    """How the run's data root was cropped from videos (prepare_frames.py), so new videos are cropped the same."""

    detector: str
    margin: float
    size: int
    frames: int
    detect_max_side: int
    align: str
    landmarks: str  # "5", or "68" when the run recorded the 68-point model too
    source: str  # the record these settings were read from

    def describe(self) -> str:
        return (f"{self.detector} faces, margin {self.margin}, {self.size} px, {self.frames} frames a video, "
                f"align {self.align} (from {self.source})")

    def recipe(self) -> CropRecipe:
        """prepare_frames.py's own crop recipe, so a new video is cropped by the very same code."""
        return CropRecipe(self.detector, self.detect_max_side, self.align, self.landmarks, self.margin, self.size)


@dataclass
class Rebuilt:
    """A detector ready to score preprocessed images, with everything a decision and a report need."""

    kind: str
    run: Path
    loaded: LoadedModel
    attrs: dict[str, Any]  # the (base) cache's attributes
    score_embeddings: Callable[[np.ndarray], np.ndarray]  # float32 embeddings -> probability of fake
    threshold: float
    threshold_note: str
    crop: FaceCrop | None
    crop_note: str
    frames_per_video: int | None  # the protocol's cap, applied after sampling as the run's rows were
    scorer_name: str
    notes: list[str] = dataclasses.field(default_factory=list)

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        """Probability of fake for a batch of uint8 model pixels (or normalised floats), through extraction's path."""
        return self.score_embeddings(self.loaded.encode_images(images).numpy())

    def model_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 model pixels (N x 3 x H x W) -> the normalised float input, on the model's device."""
        return self.loaded.normalize(pixels.to(self.loaded.device))

    def describe(self) -> dict[str, Any]:
        ident = self.loaded.identity
        return {"run": str(self.run), "kind": self.kind, "scorer": self.scorer_name, "model": ident["model"],
                "pretrained": ident["pretrained"], "weights_fingerprint": ident["weights_fingerprint"],
                "image_size": ident["image_size"], "precision": self.loaded.precision,
                "device": str(self.loaded.device), "threshold": self.threshold,
                "threshold_note": self.threshold_note, "crop": dataclasses.asdict(self.crop) if self.crop else None,
                "crop_note": self.crop_note, "frames_per_video": self.frames_per_video, "notes": self.notes}


@dataclass(frozen=True)
class Request:
    """What the user may choose about the rebuild: where it runs, and deliberate departures from the run."""

    device: str = "auto"
    precision: str = RUN_PRECISION
    threshold: float | None = None
    crop: bool = True


# ---------------------------------------------------------------- records


def cache_attrs(cache: str | None, run: Path) -> dict[str, Any]:
    """The attributes of the cache a run was made from: the .h5 itself, else its .json sidecar."""
    if not cache:
        raise UserError(f"{run} does not name the cache it was made from; it cannot be rebuilt")
    path = Path(cache)
    if path.is_file():
        return read_attrs(path)
    sides = [sidecar(path), path.with_suffix(".json")]  # NAME.h5.json, or NAME.json as older caches have it
    for side in sides:
        if side.is_file():
            return read_json_object(side, f"the attributes of {path}")
    raise UserError(f"cannot rebuild {run}: its cache {path} (and {sides[0].name}) is gone, and with it the record "
                    "of the model, weights and preprocessing the run was trained on")


def model_settings(attrs: dict[str, Any], run: Path) -> ModelSettings:
    """The model settings the cache was extracted with, checked to name the weights the cache records."""
    recorded = (attrs.get("settings") or {}).get("model")
    if not isinstance(recorded, dict):
        raise UserError(f"cannot rebuild {run}: its cache records no model settings; re-extract it")
    settings = dataclasses.replace(from_dict(ModelSettings, recorded), model=attrs["model"],
                                   init_seed=int(attrs["init_seed"]), pretrained=attrs["pretrained"])
    if attrs.get("weights_kind") == "file" and not Path(settings.pretrained).is_file():
        raise UserError(f"cannot rebuild {run}: the weights file {settings.pretrained} it was trained with is missing")
    return settings


def check_model(loaded: LoadedModel, attrs: dict[str, Any], run: Path) -> None:
    """The rebuilt model must be the cache's: same weights (fingerprint) and the same image preprocessing."""
    check_identity(loaded.identity, {k: attrs[k] for k in MODEL_KEYS if k in attrs},
                   what=f"the model rebuilt for {run}")
    diffs = [f"{k}: {loaded.identity.get(k)!r} != {attrs[k]!r}" for k in PREPROCESS_KEYS
             if k in attrs and _close(loaded.identity.get(k)) != _close(attrs[k])]
    if diffs:
        raise UserError(f"the preprocessing rebuilt for {run} differs from the one it was trained with "
                        f"({'; '.join(diffs)})")


def _close(value: Any) -> Any:
    return [round(float(v), 6) for v in value] if isinstance(value, (list, tuple)) else value


def run_precision(recorded: str, request: Request, device: torch.device, where: str) -> str:
    """The run's own precision on this device, or the user's explicit choice (`--precision`)."""
    if request.precision != RUN_PRECISION:
        return resolve_precision(request.precision, device).precision
    try:
        return resolve_precision(recorded, device).precision
    except UserError:
        raise UserError(f"{where} was computed in {recorded}, which {device.type} cannot run; pass --precision "
                        "fp32 or bf16 to score anyway (scores may then differ slightly from the run's)") from None


def run_threshold(scores: Path, request: Request) -> tuple[float, str]:
    """The decision threshold the evaluator uses: EER on the run's validation frames (`--threshold` overrides)."""
    if request.threshold is not None:
        return float(request.threshold), f"threshold {request.threshold:g} given with --threshold"
    if not scores.is_file():
        raise UserError(f"cannot rebuild the decision threshold: {scores} is missing (pass --threshold to set one)")
    table = pd.read_csv(scores, usecols=["label", "score", "split"], dtype={"split": str}, keep_default_na=False)
    if not (table["split"] == "val").any():
        raise UserError(f"{scores} has no validation rows to take a threshold from (pass --threshold)")
    threshold, note = choose_threshold(table)
    return threshold, f"{note} of the run"


def _recorded_recipe(attrs: dict[str, Any], run: Path) -> tuple[dict[str, Any] | None, str]:
    """(the data root's crop recipe or None, where it was read). Caches record it (attribute `crops`, None for
    frames not made by prepare_frames.py); older ones are read from the data root's prepare.json."""
    if "crops" in attrs:
        return attrs["crops"], f"the cache of {run}"
    root = attrs.get("data_root")
    if root and Path(root).is_dir():
        return read_crop_recipe(root), str(Path(root) / PREPARE_FILE)
    raise UserError(f"cannot tell how the frames of {run} were cropped: its data root {root} is gone and the cache "
                    "records no face-crop recipe; pass --no-crop if the inputs are face crops already")


def _check_models(recipe: dict[str, Any], run: Path) -> None:
    """The detector and landmark weights files must be the ones the run's crops were made with (sha256)."""
    for name, digest in sorted((recipe.get("models") or {}).items()):
        if file_sha256(model_file(name)) != digest:
            raise UserError(f"the face model {model_file(name)} differs from the one the frames of {run} were "
                            f"cropped with (sha256 {str(digest)[:16]}); install the recorded face models")


def face_crop(attrs: dict[str, Any], run: Path, request: Request) -> tuple[FaceCrop | None, str]:
    """The face-crop recipe of the run's data root, or None when its frames were used as they are."""
    if not request.crop:
        return None, "no face crop (--no-crop): inputs are taken to be face crops already"
    recipe, source = _recorded_recipe(attrs, run)
    if recipe is None:
        return None, ("no face crop: the run's frames were not made by prepare_frames.py, so they were used as they "
                      "are, and so are the inputs'")
    try:
        crop = FaceCrop(str(recipe["detector"]), float(recipe["margin"]), int(recipe["size"]),
                        int(recipe["frames"]), int(recipe["detect_max_side"]), str(recipe["align"]),
                        "68" if "68" in recipe["landmarks"] else "5", source)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source} does not record the face-crop settings (detector, margin, size, frames, "
                        "detect_max_side, align, landmarks)") from None
    if crop.detector not in DETECTORS or crop.align not in ALIGNMENTS:
        raise UserError(f"the frames of {run} were cropped with the face detector {crop.detector!r} and alignment "
                        f"{crop.align!r}, which this installation does not have (detectors: "
                        f"{', '.join(sorted(DETECTORS))}; alignments: {', '.join(ALIGNMENTS.names())})")
    _check_models(recipe, run)
    return crop, f"faces cropped as the run's data root was: {crop.describe()}"


def loaded_with(loaded: LoadedModel, model: torch.nn.Module, precision: str) -> LoadedModel:
    """The same LoadedModel around another (merged) model, cast the way load_model casts for `precision`."""
    cast_model(model, loaded.device, precision).eval().requires_grad_(False)
    return dataclasses.replace(loaded, model=model, precision=precision,
                               identity={**loaded.identity, "precision": precision})


# ---------------------------------------------------------------- run kinds


@dataclass(frozen=True)
class RunKind:
    """One kind of run folder: how to recognise it and how to rebuild its detector."""

    marker: tuple[str, ...]  # files that make a folder this kind of run
    rebuild: Callable[[Path, Request], Rebuilt]


RUN_KINDS: Registry[RunKind] = Registry("run kind")


def _head_scores(head: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Heads were fitted on float16-stored embeddings, so new embeddings get the same rounding first."""
    def score(embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(head.predict_proba(embeddings.astype(np.float16).astype(np.float32)), dtype=np.float64)
    return score


def rebuild_head(run: Path, request: Request) -> Rebuilt:
    meta = read_json_object(run / "head.json", "a fitted head folder holds head.json (written by fit_heads.py)")
    attrs = cache_attrs(meta.get("cache"), run)
    check_identity(attrs, meta.get("cache_identity") or {}, what=f"the cache of {run} ({meta.get('cache')})")
    threshold, threshold_note = run_threshold(run / "scores.csv", request)
    crop, crop_note = face_crop(attrs, run, request)
    settings = model_settings(attrs, run)
    device = resolve_device(request.device)
    precision = run_precision(str(attrs["precision"]), request, device, f"the cache of {run}")
    head = load_head(run / "model.joblib")
    loaded = load_model(settings, request.device, precision)
    check_model(loaded, attrs, run)
    protocol = meta.get("protocol") or {}
    return Rebuilt("head", run, loaded, attrs, _head_scores(head), threshold, threshold_note, crop, crop_note,
                   protocol.get("frames_per_video"), str(meta.get("name", run.name)))


def rebuild_lora(run: Path, request: Request) -> Rebuilt:
    # Imported here: peft is only needed for LoRA runs.
    from clipforensics.lora.checkpoint import load_adapter, load_head_tensors
    from clipforensics.lora.model import LoraSettings, fake_probability
    from clipforensics.lora.stage import ADAPTER_DIR, HEAD_FILE, RUN_FILE, sha256
    from clipforensics.lora.train import training_precision

    meta = read_json_object(run / RUN_FILE, f"a LoRA run folder holds {RUN_FILE} (written by finetune_lora.py)")
    base = meta.get("base") or {}
    attrs = cache_attrs(base.get("cache"), run)
    check_identity(attrs, base, what=f"the base cache of {run} ({base.get('cache')})")
    threshold, threshold_note = run_threshold(run / "scores.csv", request)
    crop, crop_note = face_crop(attrs, run, request)
    adapter = run / ADAPTER_DIR / "adapter_model.safetensors"
    if not adapter.is_file():
        raise UserError(f"cannot rebuild {run}: its adapter {adapter} is missing")
    if sha256(adapter) != meta.get("adapter_sha"):
        raise UserError(f"cannot rebuild {run}: {adapter} is not the adapter the run recorded "
                        f"(sha256 differs from {str(meta.get('adapter_sha'))[:16]})")
    settings = from_dict(LoraSettings, meta.get("settings") or {})
    device = resolve_device(request.device)
    try:  # the precision the run scored its frames in, as its training autocast resolves on this device
        recorded = training_precision(settings.amp, device)
    except UserError:  # e.g. --amp fp16 on a CPU: run_precision says what to do
        recorded = settings.amp
    precision = run_precision(recorded, request, device, f"the LoRA run {run}")
    base_model = load_model(model_settings(attrs, run), request.device, "fp32")
    check_model(base_model, attrs, run)
    head = load_head_tensors(run / HEAD_FILE)
    try:
        merged = load_adapter(base_model.model, run / ADAPTER_DIR).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"cannot load the adapter of {run} ({str(exc).splitlines()[0]})") from None
    loaded = loaded_with(base_model, merged, precision)
    return Rebuilt("lora", run, loaded, attrs, functools.partial(fake_probability, head), threshold, threshold_note,
                   crop, crop_note, (meta.get("protocol") or {}).get("frames_per_video"), run.name,
                   [f"LoRA best epoch {meta.get('best_epoch')}, adapter sha256 {str(meta['adapter_sha'])[:16]}"])


RUN_KINDS.register("head", RunKind(("head.json", "model.joblib"), rebuild_head))
RUN_KINDS.register("lora", RunKind(("lora.json",), rebuild_lora))


def kind_of(run: Path) -> str:
    """Which kind of run folder `run` is; a folder of several heads or anything else is refused by name."""
    if not run.is_dir():
        raise UserError(f"run folder {run} {'is not a directory' if run.exists() else 'does not exist'}")
    for name in RUN_KINDS:
        if all((run / marker).is_file() for marker in RUN_KINDS.get(name).marker):
            return name
    heads = sorted(p.name for p in run.iterdir() if p.is_dir() and (p / "head.json").is_file())
    if heads:
        raise UserError(f"{run} holds fitted heads ({', '.join(heads)}): pass one of them, "
                        f"e.g. --run {run / heads[0]}")
    raise UserError(f"{run} is not a fitted head folder (head.json + model.joblib) nor a LoRA run (lora.json)")


def rebuild(run: str | Path, request: Request) -> Rebuilt:
    """The detector a run folder records, rebuilt exactly, or a one-line refusal naming what is missing."""
    path = Path(run)
    return RUN_KINDS.get(kind_of(path)).rebuild(path, request)
