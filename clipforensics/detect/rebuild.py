"""Rebuild a trained detector from a run's own records: model, weights, preprocessing, head, threshold, face crops.

Nothing is taken from the command line that the run recorded: the run folder (opened through clipforensics.runs,
which knows every kind of run) names its cache, whose attributes say how the embeddings were made; a fine-tuned
tower adds its adapter (checked by sha256) and its head. Whatever cannot be rebuilt exactly (weights missing,
fingerprint or preprocessing differs, cache gone) is refused with one line, because a detector rebuilt "nearly"
gives other scores silently. The user may only choose where it runs and deliberate departures (`Request`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from clipforensics.core.errors import UserError
from clipforensics.detect.settings import RUN_PRECISION
from clipforensics.extract.models import LoadedModel, resolve_device, resolve_precision
from clipforensics.frames.crops import CropRecipe
from clipforensics.runs.base import Run
from clipforensics.runs.kinds import open_run



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
    crop: CropRecipe | None
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


def run_precision(recorded: str, request: Request, device: torch.device, where: str) -> str:
    """The run's own precision on this device, or the user's explicit choice (`--precision`)."""
    if request.precision != RUN_PRECISION:
        return resolve_precision(request.precision, device).precision
    try:
        return resolve_precision(recorded, device).precision
    except UserError:
        raise UserError(f"{where} was computed in {recorded}, which {device.type} cannot run; pass --precision "
                        "fp32 or bf16 to score anyway (scores may then differ slightly from the run's)") from None


def run_threshold(run: Run, request: Request) -> tuple[float, str]:
    """The decision threshold the evaluator uses: EER on the run's validation frames (`--threshold` overrides)."""
    if request.threshold is not None:
        return float(request.threshold), f"threshold {request.threshold:g} given with --threshold"
    return run.threshold()


def face_crop(run: Run, attrs: dict[str, Any], request: Request) -> tuple[CropRecipe | None, str]:
    """The face-crop recipe of the run's data root, or None when its frames (or, with --no-crop, the inputs) are
    used as they are."""
    if not request.crop:
        return None, "no face crop (--no-crop): inputs are taken to be face crops already"
    return run.crop(attrs)


def rebuild(run: str | Path, request: Request) -> Rebuilt:
    """The detector a run folder records, rebuilt exactly, or a one-line refusal naming what is missing."""
    found = open_run(Path(run))
    attrs = found.attrs()
    threshold, threshold_note = run_threshold(found, request)
    crop, crop_note = face_crop(found, attrs, request)
    device = resolve_device(request.device)
    recorded = found.kind.precision(found, attrs, device)
    precision = run_precision(recorded, request, device, f"the {found.kind.title} {found.folder}")
    score = found.scorer()
    loaded = found.kind.tower(found, attrs, request.device, precision)
    return Rebuilt(found.kind_name, found.folder, loaded, attrs, score, threshold, threshold_note, crop, crop_note,
                   found.frames_per_video, found.name, found.kind.notes(found))
