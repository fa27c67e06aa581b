"""prepare_frames.py's options and the crop recipe they make: what a rerun into the same data root must match."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipforensics.core.errors import UserError
from clipforensics.core.settings import identity_values, option
from clipforensics.data.layouts import AUTO, reader_names, resolve_videos, video_reader
from clipforensics.frames import track
from clipforensics.frames.align import ALIGNMENTS
from clipforensics.frames.crops import CropRecipe
from clipforensics.frames.detectors import DETECTORS, LANDMARKS, UPSAMPLE, detector_files, file_sha256, model_file

COMPRESSIONS = ("raw", "c23", "c40")
SAMPLING = "rint(linspace(0, n - 1, frames)) over the frames actually decoded"


@dataclass
class FrameSettings:
    """Options of prepare_frames.py. Identity fields decide the crops' pixels or the choice of videos:
    they make up `crop_recipe`, which a rerun into the same data root must match."""

    videos_root: str = option(None, "FF++ root (original_sequences/, manipulated_sequences/) or one folder "
                                    "of videos per class", required=True, metavar="DIR")
    out: str = option(None, "data root to write (Real_youtube/<video>/<frame>.png, ...)", required=True,
                      metavar="DATA_ROOT")
    frames: int = option(32, "frames per video, spread evenly over its length (all frames if shorter)",
                         identity=True)
    size: int = option(256, "side of the square output crops in pixels (DeepfakeBench: 256)", identity=True)
    margin: float = option(1.3, "crop side as a multiple of the face: of the aligned face square, or of the "
                                "face box's longer side with --align none (DeepfakeBench's scale: 1.3)", identity=True)
    detector: str = option("dlib", "face detector: dlib (HOG), dlib-cnn (MMOD CNN, slow on a CPU), haar (OpenCV)",
                           identity=True)
    align: str = option("five-point", "crop alignment: five-point (dlib's 5 landmarks, eyes level), deepfakebench "
                                      "(their 68-point keypoints and template), none (square box, no rotation)",
                        identity=True)
    landmarks: str = option("5", "landmarks recorded in faces.csv: 5, or 68 to add dlib's 68-point model",
                            choices=("5", "68"), identity=True)
    detect_max_side: int = option(640, "frames are shrunk to at most this many pixels for detection only; a "
                                       "frame with no face there is searched again at full size (landmarks "
                                       "and crops use the full frame)", identity=True)
    layout: str = option(AUTO, "input layout: ffpp (the FF++ tree), folders (one folder of videos per class), or a "
                               "data set of clipforensics/data/layouts/ (its label files are copied beside the "
                               "frames); auto: ffpp if original_sequences/ or manipulated_sequences/ exists, else "
                               "a data set's marker files, else folders",
                         choices=(AUTO, *reader_names(video_reader)), identity=True)
    compression: str = option("c23", "FF++ compression folder to read", choices=COMPRESSIONS, identity=True)
    classes: tuple[str, ...] = option((), "only these output classes, e.g. Real_youtube,FaceSwap (default: all but "
                                          "Real_actors, which extract_features.py needs --real-classes to label real)")
    max_videos: int | None = option(None, "at most N videos per class, first in name order (trial runs)")
    jobs: int = option(-1, "videos processed in parallel (-1: one per CPU core)")
    overwrite: bool = option(False, "redo every input video, also when --out was prepared with other settings "
                                    "(folders of videos no longer in the input stay: a fresh --out gives a clean tree)")


def validate(settings: FrameSettings) -> None:
    """Refuse impossible numbers and unknown names before any video is read."""
    checks = [(settings.frames >= 1, f"--frames must be at least 1, got {settings.frames}"),
              (settings.size >= 16, f"--size must be at least 16 pixels, got {settings.size}"),
              (settings.margin >= 1.0, f"--margin must be at least 1.0 (the face itself), got {settings.margin}"),
              (settings.detect_max_side >= 64,
               f"--detect-max-side must be at least 64, got {settings.detect_max_side}"),
              (settings.jobs >= 1 or settings.jobs == -1,
               f"--jobs must be a positive count or -1 (one per core), got {settings.jobs}"),
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


def crop_recipe(settings: FrameSettings) -> dict:
    """The recipe that decides every crop's pixels and the choice of videos: prepare.json's identity
    part. A rerun with another one would mix two outputs; caches copy it as part of their identity.

    Package versions are recorded beside it, not in it: a dlib or OpenCV upgrade is reported, while
    the weights files (by hash) and settings are what a rerun or a cache must match.
    """
    layout = resolve_videos(Path(settings.videos_root), settings.layout)
    return {**identity_values(settings),  # then the resolved forms of layout, compression and landmarks
            "layout": layout.name, "compression": settings.compression if layout.videos.compression else None,
            "landmarks": list(recipe(settings).landmark_models()), "sampling": SAMPLING,
            "detect_retry_full": True, "upsample": UPSAMPLE if settings.detector.startswith("dlib") else None,
            "tracking": {"link": "grown-box IoU", "grow": track.GROW, "min_iou": track.MIN_IOU,
                         "choice": "score sum, then area", "gaps": "interpolated, else nearest"},
            "models": {name: file_sha256(model_file(name)) for name in model_files(settings)}}
