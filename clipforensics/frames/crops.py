"""One video's sampled frames -> one face crop per frame: detect, track, landmarks, fill gaps, align.

Detection runs on a shrunk copy (`detect_max_side`); landmarks are predicted on the full frame
inside the tracked box; the crop is one affine matrix per frame (see align.py), recorded with the
landmarks so that every crop can be redone or checked from faces.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from clipforensics.core.errors import UserError
from clipforensics.frames.align import ALIGNMENTS, Box, centre_matrix, cut, warp
from clipforensics.frames.detectors import DETECTORS, LANDMARKS, Face, detect, make_detector, rgb
from clipforensics.frames.track import CENTRE_CROP, TrackedFace, choose_track, fill_gaps


@dataclass(frozen=True)
class CropRecipe:
    """Everything that decides a crop's pixels (picklable: sent to worker processes). prepare_frames.py crops by
    it and records it in prepare.json's `crops`, caches copy that record, and detect.py reads it back
    (`from_record`) to crop new videos by the very same code; `frames` and `source` say how many frames a video
    gave and which record the recipe was read from."""

    detector: str
    detect_max_side: int
    align: str
    landmarks: str  # "5", or "68" to record the 68-point model too
    margin: float
    size: int
    frames: int | None = None
    source: str = ""

    @classmethod
    def from_record(cls, record: Mapping[str, Any], source: str) -> "CropRecipe":
        """The recipe a prepare.json `crops` record (or a cache's copy of it) names; a record that lacks a setting,
        or names a detector or alignment this installation does not have, is one line."""
        try:
            recipe = cls(str(record["detector"]), int(record["detect_max_side"]), str(record["align"]),
                         "68" if "68" in record["landmarks"] else "5", float(record["margin"]), int(record["size"]),
                         int(record["frames"]), source)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{source} does not record the face-crop settings (detector, margin, size, frames, "
                            "detect_max_side, align, landmarks)") from None
        if recipe.detector not in DETECTORS or recipe.align not in ALIGNMENTS:
            raise UserError(f"{source} names the face detector {recipe.detector!r} and alignment {recipe.align!r}, "
                            f"which this installation does not have (detectors: {', '.join(sorted(DETECTORS))}; "
                            f"alignments: {', '.join(ALIGNMENTS.names())})")
        return recipe

    def describe(self) -> str:
        return (f"{self.detector} faces, margin {self.margin}, {self.size} px, {self.frames} frames a video, "
                f"align {self.align} (from {self.source})")

    def landmark_models(self) -> tuple[str, ...]:
        """Models run on every tracked face: the 5-point one always (cheap, recorded), 68 when asked
        for or needed by the alignment."""
        needed = {"5", self.landmarks}
        if ALIGNMENTS.get(self.align).landmarks:
            needed.add(ALIGNMENTS.get(self.align).landmarks)
        return tuple(sorted(needed, key=int))


@dataclass(frozen=True)
class FrameCrop:
    """Where one frame's crop comes from: the tracked face and the frame -> crop matrix."""

    face: TrackedFace
    matrix: np.ndarray  # 2 x 3, frame pixels -> crop pixels
    square: Box | None  # the plain square box when the crop is a resize (align none, or no face at all)


@dataclass(frozen=True)
class VideoCrops:
    crops: list[FrameCrop]
    n_tracks: int
    other_detections: int


MASK_LEVEL = 32
"""A mask pixel brighter than this (0-255) marks the manipulated face; below it is compression noise."""


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box of a mask frame's marked pixels (frame pixels), None when nothing is marked."""
    grey = mask.max(axis=2) if mask.ndim == 3 else mask
    ys, xs = np.nonzero(grey > MASK_LEVEL)
    if not len(xs):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def on_mask(faces: list[Face], mask: np.ndarray) -> list[Face]:
    """The detections of the manipulated face: those centred inside the mask's box; the mask's box itself (score
    0) when the detector found none there; none on a frame whose mask is empty (the tracker fills that frame)."""
    box = mask_box(mask)
    if box is None:
        return []
    inside = [face for face in faces if box[0] <= (face.box[0] + face.box[2]) / 2 <= box[2]
              and box[1] <= (face.box[1] + face.box[3]) / 2 <= box[3]]
    return inside or [Face(box, 0.0)]


def crop_video(frames: Sequence[np.ndarray], times: Sequence[int], recipe: CropRecipe,
               masks: Sequence[np.ndarray] | None = None) -> VideoCrops:
    """The crop of every frame of one video (BGR frames; `times` their source indices); with `masks` (one mask
    frame per frame, a data set's record of the manipulated face) only the face on the mask is tracked."""
    detector = make_detector(recipe.detector)
    found = [detect(detector, frame, recipe.detect_max_side) for frame in frames]
    if masks is not None:
        found = [on_mask(faces, mask) for faces, mask in zip(found, masks)]
    track = choose_track(found)
    models = recipe.landmark_models()
    landmarks = []
    for frame, face in zip(frames, track.faces):
        image = rgb(frame) if face is not None else None
        landmarks.append(None if face is None else {m: LANDMARKS.get(m).predict(image, face.box) for m in models})
    alignment = ALIGNMENTS.get(recipe.align)
    crops = []
    for frame, tracked in zip(frames, fill_gaps(times, track.faces, landmarks)):
        height, width = frame.shape[:2]
        if tracked.fallback == CENTRE_CROP:
            matrix, square = centre_matrix(width, height, recipe.size)
        else:
            matrix, square = alignment.matrix(tracked.landmarks, tracked.box, width, height, recipe.margin,
                                              recipe.size)
        crops.append(FrameCrop(tracked, matrix, square))
    return VideoCrops(crops, track.n_tracks, track.other_detections)


def render(frame: np.ndarray, crop: FrameCrop, size: int) -> np.ndarray:
    """The crop's pixels: a plain resize of the square (as before alignment existed) or the warp."""
    return cut(frame, crop.square, size) if crop.square is not None else warp(frame, crop.matrix, size)


def format_points(points: np.ndarray | None) -> str:
    """Landmarks as 'x y x y ...' (frame pixels, at most 2 decimals) for one CSV cell; '' when absent."""
    if points is None:
        return ""
    return " ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in np.asarray(points, np.float64).ravel())


def parse_points(text: str) -> np.ndarray:
    """Inverse of `format_points`: an n x 2 array (0 x 2 for an empty cell)."""
    values = [float(v) for v in str(text).split()] if isinstance(text, str) else []
    return np.array(values, np.float64).reshape(-1, 2)
