"""The crop recipe prepare_frames.py's settings make, and the checks on them before any video is read.

The recipe decides every crop's pixels and the choice of videos: prepare.json records it (`crops`), a rerun into
the same data root must match it, caches copy it as part of their identity, and shards of one run must agree on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from clipforensics.core.errors import UserError
from clipforensics.core.identity import Identity, declare
from clipforensics.data.layouts import resolve_videos
from clipforensics.frames import track
from clipforensics.frames.align import ALIGNMENTS
from clipforensics.frames.crops import CropRecipe
from clipforensics.frames.detectors import DETECTORS, LANDMARKS, UPSAMPLE, detector_files, file_sha256, model_file
from clipforensics.frames.settings import FrameSettings

SAMPLING = "rint(linspace(0, n - 1, frames)) over the frames actually decoded"


def validate(settings: FrameSettings) -> None:
    """Refuse impossible numbers and unknown names before any video is read."""
    checks = [(settings.frames >= 1, f"--frames-per-video must be at least 1, got {settings.frames}"),
              (settings.size >= 16, f"--size must be at least 16 pixels, got {settings.size}"),
              (settings.margin >= 1.0, f"--margin must be at least 1.0 (the face itself), got {settings.margin}"),
              (settings.detect_max_side >= 64,
               f"--detect-max-side must be at least 64, got {settings.detect_max_side}"),
              (settings.workers is None or settings.workers >= 0,
               f"--workers must be 0 (in the main process) or more, got {settings.workers}"),
              (settings.max_videos is None or settings.max_videos >= 1,
               f"--max-videos must be at least 1, got {settings.max_videos}")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    ALIGNMENTS.get(settings.align)
    DETECTORS.get(settings.detector)
    for name in model_files(settings):
        model_file(name)


def recipe(settings: FrameSettings) -> CropRecipe:
    """The crop settings a worker needs (picklable)."""
    return CropRecipe(settings.detector, settings.detect_max_side, settings.align, settings.landmarks,
                      settings.margin, settings.size)


def model_files(settings: FrameSettings) -> list[str]:
    """The weights files a run uses: the detector's (if any) and every landmark model's."""
    landmarks = [LANDMARKS.get(name).file for name in recipe(settings).landmark_models()]
    return [*detector_files(settings.detector), *landmarks]


def crop_identity(settings: FrameSettings, inputs: Mapping[str, Any] | None = None) -> Identity:
    """The recipe as an identity (`core.identity.declare`): the identity fields, with layout, compression and
    landmarks in their resolved forms, and the fixed parts of the method and the model files' hashes; `inputs`
    adds what else an output depends on (a shard: the videos it was cut from).

    Package versions are recorded beside it, not in it: a dlib or OpenCV upgrade is reported, while
    the weights files (by hash) and settings are what a rerun or a cache must match.
    """
    layout = resolve_videos(Path(settings.videos_root), settings.layout)
    resolved = {"layout": layout.name, "compression": settings.compression if layout.videos.compression else None,
                "landmarks": list(recipe(settings).landmark_models())}
    method = {"sampling": SAMPLING, "detect_retry_full": True,
              "upsample": UPSAMPLE if settings.detector.startswith("dlib") else None,
              "tracking": {"link": "grown-box IoU", "grow": track.GROW, "min_iou": track.MIN_IOU,
                           "choice": "score sum, then area", "gaps": "interpolated, else nearest"},
              "models": {name: file_sha256(model_file(name)) for name in model_files(settings)}}
    return declare(settings, resolved=resolved, inputs={**method, **(inputs or {})})


def crop_recipe(settings: FrameSettings) -> dict:
    """prepare.json's `crops`: the recipe as a plain record."""
    return dict(crop_identity(settings))
