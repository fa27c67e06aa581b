"""Face detectors and landmark models (registries), all offline from what pip installs.

    dlib      dlib's HOG + linear SVM frontal detector (DeepfakeBench's), default
    dlib-cnn  dlib's MMOD CNN detector: better on hard poses, ~100x slower on a CPU
    haar      OpenCV's bundled frontal Haar cascade (the earlier default)

A detector is a callable from a BGR frame to a list of `Face`s. dlib's weights come from the
`face-recognition-models` package; its `__init__` imports `pkg_resources` (gone from recent
setuptools), so the files are found through the import system without importing it.
For `--workers` above 1 a detector must be registered in an importable module: worker processes
rebuild the registry by importing it.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from clipforensics.core.errors import UserError
from clipforensics.core.paths import sha256_file
from clipforensics.core.registry import Registry

MODELS_PACKAGE = "face_recognition_models"
MODELS_PIN = "face-recognition-models==0.3.0"
UPSAMPLE = 1  # dlib's detectors scan the frame enlarged once: faces down to ~40 px (DeepfakeBench uses 1)


@dataclass(frozen=True)
class Face:
    """One detection in frame pixels (floats: detectors may run on a scaled copy) with its score.

    Scores are the detector's own confidence (dlib: SVM margin or CNN confidence; Haar: the
    cascade's last-stage level weight): comparable within one detector only.
    """

    box: tuple[float, float, float, float]
    score: float

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


Detector = Callable[[np.ndarray], list[Face]]


# ---------------------------------------------------------------- model files


def models_dir() -> Path:
    """Where face-recognition-models keeps dlib's .dat files (without importing the package)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"dlib's face models are not installed: pip install {MODELS_PIN}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise UserError(f"dlib model file {path} is missing: reinstall {MODELS_PIN}")
    return path


@functools.cache
def file_sha256(path: Path) -> str:
    """Provenance of a weights file (0.2 s for the 99 MB 68-point model; once per process)."""
    return sha256_file(path)


def _dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("dlib is not installed: pip install dlib-bin==20.0.1.post1") from None
    return dlib


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that decide crop pixels, for prepare.json."""
    versions: dict[str, str | None] = {"opencv": cv2.__version__, "numpy": np.__version__}
    for key, dist in (("dlib", "dlib-bin"), (MODELS_PACKAGE, "face-recognition-models")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


# Loading a model takes up to 1.6 s (the HOG detector's built-in weights; 0.7 s for the 68-point
# predictor): cached per process, so joblib's long-lived workers load each once rather than once
# per video. The objects are only read.
@functools.cache
def _hog_detector():
    return _dlib().get_frontal_face_detector()


@functools.cache
def _shape_predictor(file: str):
    return _dlib().shape_predictor(str(model_file(file)))


@functools.cache
def _cnn_model(file: str):
    return _dlib().cnn_face_detection_model_v1(str(model_file(file)))


# ---------------------------------------------------------------- detectors


def rgb(image: np.ndarray) -> np.ndarray:
    """The RGB copy dlib expects (frames are decoded as BGR)."""
    return np.ascontiguousarray(image[..., ::-1])


class HaarDetector:
    """OpenCV's frontal-face Haar cascade; the score is the cascade's last-stage level weight."""

    model_files: tuple[str, ...] = ()

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_face: float = 0.1) -> None:
        path = cv2.data.haarcascades + cascade
        self.classifier = cv2.CascadeClassifier(path)
        if self.classifier.empty():
            raise UserError(f"cannot load the Haar cascade {path} (is opencv-python-headless<5 installed?)")
        self.scale_factor, self.min_neighbors, self.min_face = scale_factor, min_neighbors, min_face

    def __call__(self, image: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        side = max(24, int(self.min_face * min(gray.shape)))
        rects, _, weights = self.classifier.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side),
            outputRejectLevels=True)
        return [Face((float(x), float(y), float(x + w), float(y + h)), float(score))
                for (x, y, w, h), score in zip(np.reshape(rects, (-1, 4)), np.ravel(weights))]


def _box(rect) -> tuple[float, float, float, float]:
    """dlib rectangles are inclusive; boxes here are exclusive at x1/y1."""
    return float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1)


class DlibHogDetector:
    """dlib's frontal face detector (HOG features, 5 sliding-window SVMs for frontal and turned faces)."""

    model_files: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.detector = _hog_detector()

    def __call__(self, image: np.ndarray) -> list[Face]:
        rects, scores, _ = self.detector.run(rgb(image), UPSAMPLE, 0.0)
        return [Face(_box(rect), float(score)) for rect, score in zip(rects, scores)]


class DlibCnnDetector:
    """dlib's MMOD CNN detector (`mmod_human_face_detector.dat`): for GPU builds of dlib, or patience."""

    model_files: tuple[str, ...] = ("mmod_human_face_detector.dat",)

    def __init__(self) -> None:
        self.model = _cnn_model(self.model_files[0])

    def __call__(self, image: np.ndarray) -> list[Face]:
        return [Face(_box(found.rect), float(found.confidence)) for found in self.model(rgb(image), UPSAMPLE)]


DETECTORS: Registry[Callable[[], Detector]] = Registry("detector")
DETECTORS.register("dlib", DlibHogDetector)
DETECTORS.register("dlib-cnn", DlibCnnDetector)
DETECTORS.register("haar", HaarDetector)


def make_detector(name: str) -> Detector:
    """Build a registered detector, or fail with one line naming the ones there are."""
    return DETECTORS.get(name)()


def detector_files(name: str) -> tuple[str, ...]:
    return tuple(getattr(DETECTORS.get(name), "model_files", ()))


def detect(detector: Detector, image: np.ndarray, max_side: int, retry_full: bool = True) -> list[Face]:
    """Run `detector` on a copy shrunk to at most `max_side` pixels, boxes mapped back to the frame.

    Detection cost grows with the area, and landmarks are predicted on the full frame anyway. A
    face that the shrinking made too small is not lost: a frame where the copy shows no face is
    searched again at full size (`retry_full`), which costs time only on such frames (bench/faces.py).
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return detector(image)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    found = [Face(tuple(v / scale for v in face.box), face.score) for face in detector(small)]
    return found if found or not retry_full else detector(image)


# ---------------------------------------------------------------- landmarks


@dataclass(frozen=True)
class LandmarkModel:
    """A dlib shape predictor: `points` landmarks per face, in the iBUG 300-W order for 68."""

    points: int
    file: str

    def predict(self, image_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks (points x 2, frame pixels) of the face in `box` of an RGB frame."""
        dlib = _dlib()
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = _shape_predictor(self.file)(image_rgb, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


LANDMARKS: Registry[LandmarkModel] = Registry("landmark model")
LANDMARKS.register("5", LandmarkModel(5, "shape_predictor_5_face_landmarks.dat"))
LANDMARKS.register("68", LandmarkModel(68, "shape_predictor_68_face_landmarks.dat"))
