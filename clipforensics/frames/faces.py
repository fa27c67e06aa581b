"""Face detectors (a registry) and the square face crop that CLIP sees.

Detectors must run offline from what pip installs, so the default is OpenCV's bundled Haar
cascade. A detector is a callable from a BGR image to a list of `Face`s; add a stronger one with
`DETECTORS["name"] = factory` (for `--jobs` above 1 the factory must live in an importable module,
because worker processes rebuild the registry by importing it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from clipforensics.core.errors import UserError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
NO_FALLBACK = ""
LAST_GOOD_BOX = "last_good_box"
CENTRE_CROP = "centre_crop"


@dataclass(frozen=True)
class Face:
    """One detection in image pixels (floats: detectors may run on a scaled copy) with its score."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


Detector = Callable[[np.ndarray], list[Face]]


class HaarDetector:
    """OpenCV's frontal-face Haar cascade; the score is the cascade's last-stage level weight."""

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


DETECTORS: dict[str, Callable[[], Detector]] = {
    "haar": HaarDetector,
}


def make_detector(name: str) -> Detector:
    """Build a registered detector, or fail with one line naming the ones there are."""
    if name not in DETECTORS:
        raise UserError(f"unknown detector {name!r}; available: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]()


def detect(detector: Detector, image: np.ndarray, max_side: int) -> list[Face]:
    """Run `detector` on a copy shrunk to at most `max_side` pixels (Haar cost grows with area)."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return detector(image)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    return [Face(tuple(v / scale for v in face.box), face.score) for face in detector(small)]


def _round(value: float) -> int:
    """Round half up, so crop placement does not depend on the parity of a coordinate."""
    return math.floor(value + 0.5)


def _place(centre: float, side: int, limit: int) -> int:
    return min(max(_round(centre - side / 2), 0), limit - side)


def square_crop(box: Sequence[float], width: int, height: int, margin: float) -> Box:
    """Square of side margin x the box's longer side, centred on the box, shifted (not cut) into the frame.

    Shifting keeps the crop square and the face at its scale; only a crop wider than the frame's
    shorter side shrinks, to that side.
    """
    x0, y0, x1, y1 = box
    side = max(1, min(_round(margin * max(x1 - x0, y1 - y0)), width, height))
    left = _place((x0 + x1) / 2, side, width)
    top = _place((y0 + y1) / 2, side, height)
    return left, top, left + side, top + side


def centre_crop(width: int, height: int) -> Box:
    """The largest centred square: where a face most likely is when none was ever found."""
    return square_crop((0, 0, width, height), width, height, 1.0)


@dataclass(frozen=True)
class Crop:
    """Where one frame was cropped and why: a detection (score) or a fallback (reason)."""

    box: Box
    score: float
    fallback: str


def track_crops(faces_per_frame: Iterable[list[Face]], sizes: Iterable[tuple[int, int]], margin: float) -> list[Crop]:
    """One crop per frame: the largest face; else the video's last detected face; else the centre."""
    crops: list[Crop] = []
    last: Face | None = None
    for faces, (width, height) in zip(faces_per_frame, sizes):
        if faces:
            last = max(faces, key=lambda face: face.area)
            crops.append(Crop(square_crop(last.box, width, height, margin), last.score, NO_FALLBACK))
        elif last is not None:
            crops.append(Crop(square_crop(last.box, width, height, margin), math.nan, LAST_GOOD_BOX))
        else:
            crops.append(Crop(centre_crop(width, height), math.nan, CENTRE_CROP))
    return crops


def cut(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The crop resized to size x size (area filter to shrink, bicubic to enlarge)."""
    x0, y0, x1, y1 = box
    patch = image[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interpolation)
