"""From a tracked face to the crop CLIP sees: an aligned (rotated, scaled) square, or a plain box.

Every crop is one 2x3 affine matrix from frame pixels to crop pixels (recorded in faces.csv):

    five-point     dlib's 5 landmarks (eye corners, base of the nose) -> canonical positions by a
                   least-squares similarity (rotation, uniform scale, shift); eyes level. Default.
    deepfakebench  DeepfakeBench's recipe: 68-point landmarks 37, 44, 30, 49, 55 -> ArcFace's
                   5-point template, exactly as their preprocessing/preprocess.py does it.
    none           the axis-aligned square of `margin` x the face box's longer side (the earlier crops).

Canonical positions live in a unit face square (ArcFace's 112 x 112 template divided by 112);
`margin` m widens it around its centre, `size` sets the pixels: p -> (p + (m - 1) / 2) / m * size,
which is DeepfakeBench's "scale" arithmetic (and dlib's face-chip padding with padding = (m - 1) / 2).

Where the five-point template comes from (no hand-tuned numbers): dlib's own 5-point template and
its 68-point mean face share one frame (both in dlib's get_face_chip_details, HELEN averages). The
similarity that puts the mean face's eye centres, nose tip and mouth corners onto ArcFace's
template places dlib's 5 points too; those images are the canonical positions. So on an average
face the five-point crop has ArcFace's framing, upright. DeepfakeBench's indices 49 and 55 are
not the mouth corners (48 and 54) but an upper-lip and a lower-lip point, so their fit tilts an
average face by 2.7 degrees (ArcFace's own template: 0.3); `deepfakebench` keeps that, to
reproduce their crops.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import cv2
import numpy as np

from clipforensics.core.registry import Registry

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

# ArcFace's 5-point template (eye centres, nose tip, mouth corners) on a 112 x 112 face, as DeepfakeBench
# uses it: the 96 x 112 original with x shifted by 8.
ARCFACE_112 = np.array([[30.2946 + 8, 51.6963], [65.5318 + 8, 51.5014], [48.0252 + 8, 71.7366],
                        [33.5493 + 8, 92.3655], [62.7299 + 8, 92.2041]])

# dlib's mean face (dlib/image_transforms/interpolation.h, get_face_chip_details), the 68-point
# indices used here; x to the image right, y down, on dlib's unit face square.
DLIB_MEAN_FACE = {
    30: (0.490127, 0.515625),
    36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852), 39: (0.334606, 0.231733),
    40: (0.260918, 0.245099), 41: (0.182743, 0.244077),
    42: (0.645647, 0.231733), 43: (0.714428, 0.179852), 44: (0.793132, 0.178758), 45: (0.858516, 0.216423),
    46: (0.79751, 0.244077), 47: (0.719335, 0.245099),
    48: (0.254149, 0.780233), 54: (0.726104, 0.780233),
}
# dlib's 5-point template in the same frame, in the order shape_predictor_5_face_landmarks returns:
# image-right eye outer and inner corner, image-left eye outer and inner corner, base of the nose.
DLIB_MEAN_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                        [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                        [0.4901123135679, 0.6277975316475]])
# DeepfakeBench's get_keypts: their "eyes, nose, mouth" points in the 68/81-point scheme.
DEEPFAKEBENCH_POINTS = (37, 44, 30, 49, 55)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (2x3) taking `src` points onto `dst` (OpenCV; every point an inlier).

    A reprojection threshold larger than any image makes RANSAC keep all points, and OpenCV then
    refines on them: the plain least-squares fit (Umeyama's, scikit-image's `SimilarityTransform`).
    """
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(src, np.float64).reshape(-1, 1, 2),
                                            np.asarray(dst, np.float64).reshape(-1, 1, 2),
                                            method=cv2.RANSAC, ransacReprojThreshold=1e9, refineIters=50)
    if matrix is None:
        raise ValueError("degenerate landmarks: no similarity transform")
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (n x 2) through a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


@functools.cache
def five_point_template() -> np.ndarray:
    """dlib's 5 points on ArcFace's unit face square (see the module docstring); 5 x 2."""
    eyes_nose_mouth = np.array([np.mean([DLIB_MEAN_FACE[i] for i in range(36, 42)], axis=0),
                                np.mean([DLIB_MEAN_FACE[i] for i in range(42, 48)], axis=0),
                                DLIB_MEAN_FACE[30], DLIB_MEAN_FACE[48], DLIB_MEAN_FACE[54]])
    return apply(similarity(eyes_nose_mouth, ARCFACE_112 / 112.0), DLIB_MEAN_5)


def canonical(unit_points: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Unit-square template points placed in a size x size crop with `margin` around the face square."""
    return (np.asarray(unit_points, np.float64) + (margin - 1.0) / 2.0) / margin * size


# ---------------------------------------------------------------- plain boxes (align none)


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


def cut(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The crop resized to size x size (area filter to shrink, bicubic to enlarge)."""
    x0, y0, x1, y1 = box
    patch = image[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def box_matrix(box: Box, size: int) -> np.ndarray:
    """The affine matrix of `cut`: cv2.resize maps pixel centres as dst = s * (src - x0 + 0.5) - 0.5."""
    x0, y0, x1, _ = box
    s = size / (x1 - x0)
    return np.array([[s, 0.0, s * (0.5 - x0) - 0.5], [0.0, s, s * (0.5 - y0) - 0.5]])


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The aligned crop: bilinear, black outside the frame (as DeepfakeBench's cv2.warpAffine)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def source_bounds(matrix: np.ndarray, size: int) -> tuple[float, float, float, float]:
    """Axis-aligned bounds of what a crop shows, as a box (x1/y1 exclusive; may reach outside the frame).

    Matrices map pixel centres; a box's pixels x0 .. x1 - 1 span x0 - 0.5 .. x1 - 0.5, hence the shifts.
    """
    edges = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    points = apply(cv2.invertAffineTransform(matrix), edges) + 0.5
    return (*points.min(axis=0), *points.max(axis=0))


def matrix_roll(matrix: np.ndarray) -> float:
    """The face's tilt in the frame that the crop undoes, in degrees (clockwise on screen is positive)."""
    return math.degrees(math.atan2(matrix[0, 1], matrix[0, 0]))


def matrix_scale(matrix: np.ndarray) -> float:
    """Crop pixels per frame pixel."""
    return math.hypot(matrix[0, 0], matrix[1, 0])


# ---------------------------------------------------------------- alignments


@dataclass(frozen=True)
class Alignment:
    """How landmarks (or the box) become the crop's matrix; `landmarks` names the model it needs."""

    landmarks: str | None
    points: tuple[int, ...] | None  # which of the model's points; None: all

    def unit_template(self) -> np.ndarray:
        return five_point_template() if self.landmarks == "5" else ARCFACE_112 / 112.0

    def matrix(self, landmarks: Mapping[str, np.ndarray], box: Sequence[float], width: int, height: int,
               margin: float, size: int) -> tuple[np.ndarray, Box | None]:
        """The frame -> crop matrix, and the square box when the crop is a plain resize (align none)."""
        if self.landmarks is None:
            square = square_crop(box, width, height, margin)
            return box_matrix(square, size), square
        points = np.asarray(landmarks[self.landmarks], np.float64)
        if self.points is not None:
            points = points[list(self.points)]
        return similarity(points, canonical(self.unit_template(), margin, size)), None


ALIGNMENTS: Registry[Alignment] = Registry("alignment")
ALIGNMENTS.register("five-point", Alignment("5", None))
ALIGNMENTS.register("deepfakebench", Alignment("68", DEEPFAKEBENCH_POINTS))
ALIGNMENTS.register("none", Alignment(None, None))


def centre_matrix(width: int, height: int, size: int) -> tuple[np.ndarray, Box]:
    """The crop of a video where no face was ever found: the centre square, resized."""
    square = centre_crop(width, height)
    return box_matrix(square, size), square
