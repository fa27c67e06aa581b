"""A video file that comes with a mask video marking, frame by frame, the face that was manipulated.

DFD ships one for every fake (manipulated_sequences/DeepFakeDetection/masks/videos/<same name>.mp4): its
scenes hold several people, and a crop of whichever face the detector ranks first is often not the fake one.
prepare_frames.py keeps only the detections on the mask (frames/crops.py), so the crop is the manipulated face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipforensics.data.layouts.base import VideoFile


@dataclass(frozen=True)
class MaskedVideoFile(VideoFile):
    """A video file to prepare and its mask video (same frames, non-zero where the face was manipulated)."""

    mask: Path = Path()
