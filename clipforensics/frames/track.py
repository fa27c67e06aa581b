"""One face per video: link detections across the sampled frames by overlap, keep the strongest track.

Taking the largest face of each frame (DeepfakeBench's rule) lets one frame with a second person,
a poster or a false detection switch identities in the middle of a video. Here detections are
linked frame to frame to the track whose last box they overlap most: the IoU of the two boxes each
grown `GROW` times about its centre, at least `min_iou` (sampled frames are far apart in time, so
a face may move by about its own width between them; a face beside it does not overlap). The video's
face is the track with the most evidence (the sum of its detection scores, then its total area),
so a face seen in one frame, or a weak false detection seen in every frame, does not win. Frames
where that track has no detection take their box and landmarks from the track's neighbours,
interpolated in time between two detections or copied from the nearest one, and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from clipforensics.frames.detectors import Face

MIN_IOU = 0.3
GROW = 2.0
NO_FALLBACK = ""
INTERPOLATED = "interpolated"  # between two frames where the track was detected
NEAREST = "nearest"  # before its first or after its last detection: a copy of the nearest one
CENTRE_CROP = "centre_crop"  # no face anywhere in the video
FALLBACKS = (NO_FALLBACK, INTERPOLATED, NEAREST, CENTRE_CROP)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    members: dict[int, Face] = field(default_factory=dict)  # frame position -> detection
    last: Face | None = None

    def strength(self) -> tuple[float, float, float]:
        scores = sum(max(face.score, 0.0) for face in self.members.values())
        area = sum(face.area for face in self.members.values())
        return scores, area, -min(self.members)  # ties: the track that starts first


@dataclass(frozen=True)
class Track:
    """The chosen face per frame position (None where it was not detected) and what else was seen."""

    faces: tuple[Face | None, ...]
    n_tracks: int  # tracks found in the video (1 for a lone face; more: other faces or false detections)
    other_detections: int  # detections not on the chosen track


def grown(box: Sequence[float], factor: float = GROW) -> tuple[float, float, float, float]:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def link(faces_per_frame: Sequence[Sequence[Face]], min_iou: float = MIN_IOU) -> list[_Track]:
    """Greedy frame-to-frame linking: best overlaps first, each track and detection used once per frame."""
    tracks: list[_Track] = []
    for position, faces in enumerate(faces_per_frame):
        pairs = sorted(((iou(grown(track.last.box), grown(face.box)), t, f) for t, track in enumerate(tracks)
                        for f, face in enumerate(faces)), reverse=True)
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for overlap, t, f in pairs:
            if overlap < min_iou:
                break
            if t in used_tracks or f in used_faces:
                continue
            used_tracks.add(t)
            used_faces.add(f)
            tracks[t].members[position] = tracks[t].last = faces[f]
        for f, face in enumerate(faces):
            if f not in used_faces:
                tracks.append(_Track({position: face}, face))
    return tracks


def choose_track(faces_per_frame: Sequence[Sequence[Face]], min_iou: float = MIN_IOU) -> Track:
    """The video's face: the strongest linked track (see the module docstring)."""
    tracks = link(faces_per_frame, min_iou)
    n_detections = sum(len(faces) for faces in faces_per_frame)
    if not tracks:
        return Track((None,) * len(faces_per_frame), 0, 0)
    best = max(tracks, key=_Track.strength)
    faces = tuple(best.members.get(position) for position in range(len(faces_per_frame)))
    return Track(faces, len(tracks), n_detections - len(best.members))


@dataclass(frozen=True)
class TrackedFace:
    """The face used in one frame: detected (score) or filled from the track's neighbours (fallback)."""

    box: tuple[float, float, float, float] | None  # None only for CENTRE_CROP
    score: float
    fallback: str
    landmarks: Mapping[str, np.ndarray]  # landmark model name -> points x 2, frame pixels


def fill_gaps(times: Sequence[int], faces: Sequence[Face | None],
              landmarks: Sequence[Mapping[str, np.ndarray] | None]) -> list[TrackedFace]:
    """Every frame gets the track's face: its detection, else interpolated at its time, else the nearest.

    `times` are the frames' source indices (interpolation weights follow time, not sample order);
    `landmarks[i]` belongs to `faces[i]` and is None exactly where it is.
    """
    detected = [i for i, face in enumerate(faces) if face is not None]
    out: list[TrackedFace] = []
    for i, face in enumerate(faces):
        if face is not None:
            out.append(TrackedFace(face.box, face.score, NO_FALLBACK, dict(landmarks[i] or {})))
            continue
        before = [j for j in detected if j < i]
        after = [j for j in detected if j > i]
        if not before and not after:
            out.append(TrackedFace(None, math.nan, CENTRE_CROP, {}))
        elif before and after:
            p, n = before[-1], after[0]
            w = (times[i] - times[p]) / (times[n] - times[p])
            box = tuple(float(v) for v in (1 - w) * np.asarray(faces[p].box) + w * np.asarray(faces[n].box))
            points = {k: (1 - w) * landmarks[p][k] + w * landmarks[n][k] for k in landmarks[p]}
            out.append(TrackedFace(box, math.nan, INTERPOLATED, points))
        else:
            j = before[-1] if before else after[0]
            out.append(TrackedFace(faces[j].box, math.nan, NEAREST, dict(landmarks[j])))
    return out
