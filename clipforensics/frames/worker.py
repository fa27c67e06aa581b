"""One video, in a worker process: sample, detect, track, crop, write its frames and its rows under `.parts/`.

Never half-written: the frames go into a hidden temporary folder renamed into place only after the
video's rows were saved, so a video counts as done exactly when its folder and both parts exist.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from clipforensics.core.io import install_dir, remove_stale_temps, temp_sibling, write_csv
from clipforensics.data.layouts import VideoFile
from clipforensics.data.layouts.masked import MaskedVideoFile
from clipforensics.frames import track
from clipforensics.frames.align import matrix_roll, matrix_scale, source_bounds
from clipforensics.frames.crops import CropRecipe, FrameCrop, VideoCrops, crop_video, format_points, render
from clipforensics.frames.tables import FACE_COLUMNS, MATRIX_COLUMNS, PARTS, VIDEO_COLUMNS
from clipforensics.frames.video import Sampled, VideoError, read_sampled

PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # level 1: fast, and barely larger on noisy faces
WATCHDOG = "clipforensics-parent-watchdog"


@dataclass(frozen=True)
class Plan:
    """What a worker needs: picklable, so joblib can send it to other processes."""

    out: Path
    frames: int
    recipe: CropRecipe
    threads: int  # OpenCV threads per worker: 1 when videos run in parallel
    parent: int  # pid of the process that holds the lock: a worker whose parent died stops writing

    def video_dir(self, job: VideoFile) -> Path:
        return self.out / job.class_name / job.video

    def part(self, job: VideoFile, kind: str) -> Path:
        return self.out / PARTS / job.class_name / f"{job.video}.{kind}.csv"

    def is_done(self, job: VideoFile) -> bool:
        return self.video_dir(job).is_dir() and all(self.part(job, k).is_file() for k in ("faces", "video"))


@dataclass(frozen=True)
class Outcome:
    """What became of one video: written (frame and fallback counts) or failed (reason)."""

    job: VideoFile
    frames: int = 0
    short: bool = False
    fallbacks: int = 0
    reason: str = ""


def frame_name(index: int, n_frames: int) -> str:
    """Zero-padded source index, wide enough for the whole video, so names sort in time order."""
    return f"{index:0{max(3, len(str(n_frames - 1)))}d}.png"


def _write_frames(folder: Path, sampled: Sampled, crops: list[FrameCrop], size: int) -> None:
    """Each sampled frame's crop as a PNG named by its index in the video."""
    folder.mkdir(parents=True)
    for index, frame, crop in zip(sampled.indices, sampled.frames, crops):
        path = folder / frame_name(index, sampled.n_frames)
        if not cv2.imwrite(str(path), render(frame, crop, size), PNG_OPTIONS):
            raise OSError(f"could not write {path}")


def _face_row(crop: FrameCrop, size: int) -> dict:
    """The face box, the crop's bounds in the frame, its matrix and the landmarks of one frame."""
    face = crop.face
    bounds = crop.square if crop.square is not None else tuple(round(v, 2) for v in source_bounds(crop.matrix, size))
    row = {"score": face.score, "fallback": face.fallback,
           **dict(zip(("face_x0", "face_y0", "face_x1", "face_y1"),
                      (round(v, 2) for v in face.box) if face.box is not None else [np.nan] * 4)),
           **dict(zip(("x0", "y0", "x1", "y1"), bounds)),
           "roll": round(matrix_roll(crop.matrix), 3), "scale": round(matrix_scale(crop.matrix), 6),
           **dict(zip(MATRIX_COLUMNS, (float(v) for v in crop.matrix.ravel())))}
    for model in ("5", "68"):
        row[f"landmarks{model}"] = format_points(face.landmarks.get(model))
    return row


def _tables(job: VideoFile, plan: Plan, sampled: Sampled, result: VideoCrops) -> tuple[pd.DataFrame, pd.DataFrame]:
    """This video's rows of faces.csv and its one row of videos.csv."""
    crops = result.crops
    face_rows = pd.DataFrame([{**_face_row(c, plan.recipe.size), "class": job.class_name, "video": job.video,
                               "frame": index, "detector": plan.recipe.detector}
                              for index, c in zip(sampled.indices, crops)], columns=list(FACE_COLUMNS))
    fallbacks = _fallbacks(crops)
    video = pd.DataFrame([{"class": job.class_name, "video": job.video, "source": str(job.source),
                           "frames_reported": sampled.reported, "frames_read": sampled.n_frames,
                           "frames_written": len(crops), "short": sampled.n_frames < plan.frames,
                           "detected": len(crops) - fallbacks, "fallbacks": fallbacks, "tracks": result.n_tracks,
                           "other_detections": result.other_detections}], columns=list(VIDEO_COLUMNS))
    return face_rows, video


def _fallbacks(crops: list[FrameCrop]) -> int:
    """Frames cropped without a detected face."""
    return sum(crop.face.fallback != track.NO_FALLBACK for crop in crops)


def _orphaned(plan: Plan) -> bool:
    """A worker process whose parent (the run holding the lock) is gone: its writes would be unguarded."""
    return os.getpid() != plan.parent and os.getppid() != plan.parent


def _exit_when_orphaned(plan: Plan) -> None:
    """In a worker process: end it within 0.2 s of its parent's death (kill -9 included), so no worker keeps
    writing into --out outside the lock. joblib's workers would otherwise live on for minutes."""
    if os.getpid() == plan.parent or any(t.name == WATCHDOG for t in threading.enumerate()):
        return

    def watch() -> None:
        while not _orphaned(plan):
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name=WATCHDOG, daemon=True).start()


def read_masks(job: VideoFile, sampled: Sampled, plan: Plan) -> tuple[np.ndarray, ...] | None:
    """The mask frames at the sampled frames' indices for a video that has a mask video, else None; a mask video
    that does not match its video frame for frame is a failed video (its crops could be of the wrong face)."""
    if not isinstance(job, MaskedVideoFile):
        return None
    masks = read_sampled(job.mask, plan.frames, plan.threads)
    if masks.indices != sampled.indices:
        raise VideoError(f"mask video {job.mask} has {masks.n_frames} frames, the video {sampled.n_frames}")
    return masks.frames


def prepare_video(job: VideoFile, plan: Plan) -> Outcome:
    """Sample, detect, crop and write one video; an unreadable video is an Outcome with a reason."""
    _exit_when_orphaned(plan)
    if plan.threads:
        cv2.setNumThreads(plan.threads)
    final = plan.video_dir(job)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final.parent)
    tmp = temp_sibling(final)
    try:
        sampled = read_sampled(job.source, plan.frames, plan.threads)
        result = crop_video(sampled.frames, sampled.indices, plan.recipe, read_masks(job, sampled, plan))
        crops = result.crops
        _write_frames(tmp, sampled, crops, plan.recipe.size)
        face_rows, video = _tables(job, plan, sampled, result)
        if _orphaned(plan):
            os._exit(1)
        write_csv(plan.part(job, "faces"), face_rows)
        write_csv(plan.part(job, "video"), video)
        install_dir(tmp, final)
    except VideoError as exc:
        return Outcome(job, reason=str(exc))
    except cv2.error as exc:
        return Outcome(job, reason=f"OpenCV error: {str(exc).strip().splitlines()[-1]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Outcome(job, frames=len(crops), short=sampled.n_frames < plan.frames, fallbacks=_fallbacks(crops))
