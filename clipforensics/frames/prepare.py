"""From videos to the data root extract_features.py reads: evenly sampled, face-cropped PNG frames.

    videos (FF++ tree or class folders) -> sample N frames -> detect -> track one face -> landmarks
      -> align -> DATA_ROOT/<Class>/<video>/<frame>.png, faces.csv, videos.csv, failed_videos.csv,
         prepare.json (the recipe, read back by extract_features.py)

Resumable and never half-written: each video's frames go into a hidden temporary folder that is
renamed into place only when complete, after its rows were saved under `.parts/`; a rerun skips
videos whose folder and parts exist and merges every part into the CSVs at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.data.layouts import LAYOUTS as DATA_LAYOUTS
from clipforensics.data.layouts import DATASET_LAYOUTS, copy_label_files, detect_dataset_layout, video_files
from clipforensics.core.io import (OutputDir, claim_output, exclusive_lock, install_dir, remove_stale_temps,
                                   temp_sibling, write_csv, write_json)
from clipforensics.core.registry import Registry
from clipforensics.core.settings import identity_values, option, to_dict
from clipforensics.data.crops import PREPARE_FILE
from clipforensics.frames import track
from clipforensics.frames.align import ALIGNMENTS, matrix_roll, matrix_scale, source_bounds
from clipforensics.frames.crops import CropRecipe, FrameCrop, VideoCrops, crop_video, format_points, render
from clipforensics.frames.detectors import (DETECTORS, LANDMARKS, UPSAMPLE, detector_files, file_sha256, model_file,
                                            package_versions)
from clipforensics.frames.video import VIDEO_EXTENSIONS, Sampled, VideoError, read_sampled

COMPRESSIONS = ("raw", "c23", "c40")
MATRIX_COLUMNS = ("m00", "m01", "m02", "m10", "m11", "m12")
FACE_COLUMNS = ("class", "video", "frame", "detector", "score", "fallback", "face_x0", "face_y0", "face_x1",
                "face_y1", "x0", "y0", "x1", "y1", "roll", "scale", *MATRIX_COLUMNS, "landmarks5", "landmarks68")
VIDEO_COLUMNS = ("class", "video", "source", "frames_reported", "frames_read", "frames_written", "short",
                 "detected", "fallbacks", "tracks", "other_detections")
FAILED_COLUMNS = ("class", "video", "source", "reason")
STRING_COLUMNS = ("class", "video", "source", "detector", "fallback", "reason", "landmarks5", "landmarks68")
# Written only when named in --classes: the manifest labels every class folder that is not a real class
# (default Real_youtube) as fake, so FF++'s DeepFakeDetection actors would silently become fakes.
OPT_IN_CLASSES = ("Real_actors",)
SETTINGS_FILE = PREPARE_FILE
PARTS = ".parts"
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # level 1: fast, and barely larger on noisy faces
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
    layout: str = option("auto", "input layout: ffpp (the FF++ tree), celebdf, dfdc, csv (data sets whose label "
                                 "files are copied beside the frames), folders (one folder of videos per class), or "
                                 "auto (ffpp if original_sequences/ or manipulated_sequences/ exists, else a data "
                                 "set's marker files, else folders)",
                         choices=("auto", "ffpp", "folders", *DATASET_LAYOUTS), identity=True)
    compression: str = option("c23", "FF++ compression folder to read", choices=COMPRESSIONS, identity=True)
    classes: tuple[str, ...] = option((), "only these output classes, e.g. Real_youtube,FaceSwap (default: all but "
                                          "Real_actors, which extract_features.py needs --real-classes to label real)")
    max_videos: int | None = option(None, "at most N videos per class, first in name order (trial runs)")
    jobs: int = option(-1, "videos processed in parallel (-1: one per CPU core)")
    overwrite: bool = option(False, "redo every input video, also when --out was prepared with other settings "
                                    "(folders of videos no longer in the input stay: a fresh --out gives a clean tree)")


# ---------------------------------------------------------------- finding videos


@dataclass(frozen=True)
class VideoJob:
    """One input video and where its frames go: <class>/<video> in the data root."""

    class_name: str
    video: str
    source: Path


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_EXTENSIONS)


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _ffpp_folders(root: Path, compression: str) -> dict[str, Path]:
    """Class name -> videos folder: original_sequences/<kind> -> Real_<kind>, manipulated -> <Method>."""
    folders = {f"Real_{kind.name}": kind / compression / "videos" for kind in _subfolders(root / "original_sequences")}
    folders.update({m.name: m / compression / "videos" for m in _subfolders(root / "manipulated_sequences")})
    present = {name: folder for name, folder in folders.items() if folder.is_dir()}
    if not present:
        found = sorted({c.name for group in ("original_sequences", "manipulated_sequences")
                        for kind in _subfolders(root / group) for c in _subfolders(kind)})
        raise UserError(f"no {compression}/videos folders in the FF++ tree {root}; "
                        f"compressions found: {', '.join(found) or 'none'} (set --compression)")
    return present


def _folder_classes(root: Path) -> dict[str, Path]:
    """Plain layout: every visible sub-folder of the root is a class holding its videos."""
    return {folder.name: folder for folder in _subfolders(root)}


VIDEO_LAYOUTS: Registry[Callable[[Path, str], dict[str, Path]]] = Registry("video layout")
"""How the input videos are laid out: (videos root, FF++ compression) -> {class: folder of its videos}."""
VIDEO_LAYOUTS.register("ffpp", _ffpp_folders)
VIDEO_LAYOUTS.register("folders", lambda root, compression: _folder_classes(root))


def resolve_layout(root: Path, layout: str) -> str:
    """`auto` means ffpp when the FF++ top folders exist, else class folders."""
    if layout != "auto":
        return layout
    is_ffpp = any((root / name).is_dir() for name in ("original_sequences", "manipulated_sequences"))
    return "ffpp" if is_ffpp else detect_dataset_layout(root) or "folders"


def _select(folders: dict[str, Path], classes: tuple[str, ...]) -> dict[str, Path]:
    """The named classes, or every class found except the opt-in ones."""
    missing = [name for name in classes if name not in folders]
    if missing:
        raise UserError(f"class(es) {', '.join(missing)} not found; available: {', '.join(sorted(folders))}")
    return {name: folders[name] for name in (classes or sorted(set(folders) - set(OPT_IN_CLASSES)))}


def _dataset_jobs(root: Path, layout: str, settings: FrameSettings) -> list[VideoJob]:
    """The labelled video files of a data set layout (data.layouts), by class folder, --classes and --max-videos."""
    files = video_files(root, layout)
    by_class: dict[str, list[VideoJob]] = {}
    for found in files:
        by_class.setdefault(found.class_name, []).append(VideoJob(found.class_name, found.video, found.source))
    selected = _select(by_class, settings.classes)
    return [job for jobs in selected.values() for job in jobs[:settings.max_videos]]


def find_videos(settings: FrameSettings) -> list[VideoJob]:
    """Every input video as a job, in class then name order; duplicate output names are refused."""
    root = Path(settings.videos_root)
    if not root.is_dir():
        raise UserError(f"videos root {root} {'is not a directory' if root.exists() else 'does not exist'}")
    layout = resolve_layout(root, settings.layout)
    if layout in DATASET_LAYOUTS:
        jobs = _dataset_jobs(root, layout, settings)
    else:
        folders = _select(VIDEO_LAYOUTS.get(layout)(root, settings.compression), settings.classes)
        jobs = [VideoJob(name, path.stem, path) for name, folder in folders.items()
                for path in _videos_in(folder)[:settings.max_videos]]
    if not jobs:
        raise UserError(f"no videos ({'/'.join(sorted(e[1:] for e in VIDEO_EXTENSIONS))}) found under {root} "
                        f"(layout {layout})")
    names = pd.Series([f"{job.class_name}/{job.video}" for job in jobs])
    twice = sorted(set(names[names.duplicated()]))
    if twice:
        raise UserError(f"two videos would write the same folder: {', '.join(twice[:5])} (same name, other extension?)")
    return jobs


# ---------------------------------------------------------------- one video


@dataclass(frozen=True)
class Plan:
    """What a worker needs: picklable, so joblib can send it to other processes."""

    out: Path
    frames: int
    recipe: CropRecipe
    threads: int  # OpenCV threads per worker: 1 when videos run in parallel
    parent: int  # pid of the process that holds the lock: a worker whose parent died stops writing

    def video_dir(self, job: VideoJob) -> Path:
        return self.out / job.class_name / job.video

    def part(self, job: VideoJob, kind: str) -> Path:
        return self.out / PARTS / job.class_name / f"{job.video}.{kind}.csv"

    def is_done(self, job: VideoJob) -> bool:
        return self.video_dir(job).is_dir() and all(self.part(job, k).is_file() for k in ("faces", "video"))


@dataclass(frozen=True)
class Outcome:
    """What became of one video: written (frame and fallback counts) or failed (reason)."""

    job: VideoJob
    frames: int = 0
    short: bool = False
    fallbacks: int = 0
    reason: str = ""


def frame_name(index: int, n_frames: int) -> str:
    """Zero-padded source index, wide enough for the whole video, so names sort in time order."""
    return f"{index:0{max(3, len(str(n_frames - 1)))}d}.png"


def _write_frames(folder: Path, sampled: Sampled, crops: list[FrameCrop], size: int) -> None:
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


def _tables(job: VideoJob, plan: Plan, sampled: Sampled, result: VideoCrops) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    return sum(crop.face.fallback != track.NO_FALLBACK for crop in crops)


WATCHDOG = "clipforensics-parent-watchdog"


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


def prepare_video(job: VideoJob, plan: Plan) -> Outcome:
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
        result = crop_video(sampled.frames, sampled.indices, plan.recipe)
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


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Summary:
    """Counts for the closing line, and where the tables are."""

    prepared: int
    skipped: int
    failed: int
    frames: int
    short: int
    fallbacks: int
    out: Path

    def line(self, requested: int) -> str:
        text = (f"prepared {self.prepared} videos ({self.frames} frames), skipped {self.skipped} already finished, "
                f"{self.failed} failed")
        if self.failed:
            text += f" (listed in {self.out / 'failed_videos.csv'})"
        if self.short:
            text += f"; {self.short} shorter than {requested} frames (all their frames kept)"
        if self.fallbacks:
            text += f"; {self.fallbacks} frames without a detected face (fallback crop)"
        return text + f"; boxes in {self.out / 'faces.csv'}"


def _validate(settings: FrameSettings) -> None:
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
    for name in _model_files(settings):
        model_file(name)


def _recipe(settings: FrameSettings) -> CropRecipe:
    return CropRecipe(settings.detector, settings.detect_max_side, settings.align, settings.landmarks,
                      settings.margin, settings.size)


def _model_files(settings: FrameSettings) -> list[str]:
    """The weights files a run uses: the detector's (if any) and every landmark model's."""
    landmarks = [LANDMARKS.get(name).file for name in _recipe(settings).landmark_models()]
    return [*detector_files(settings.detector), *landmarks]


def crop_recipe(settings: FrameSettings) -> dict:
    """The recipe that decides every crop's pixels and the choice of videos: prepare.json's identity
    part. A rerun with another one would mix two outputs; caches copy it as part of their identity.

    Package versions are recorded beside it, not in it: a dlib or OpenCV upgrade is reported, while
    the weights files (by hash) and settings are what a rerun or a cache must match.
    """
    layout = resolve_layout(Path(settings.videos_root), settings.layout)
    return {**identity_values(settings),  # then the resolved forms of layout, compression and landmarks
            "layout": layout, "compression": settings.compression if layout == "ffpp" else None,
            "landmarks": list(_recipe(settings).landmark_models()), "sampling": SAMPLING,
            "detect_retry_full": True, "upsample": UPSAMPLE if settings.detector.startswith("dlib") else None,
            "tracking": {"link": "grown-box IoU", "grow": track.GROW, "min_iou": track.MIN_IOU,
                         "choice": "score sum, then area", "gaps": "interpolated, else nearest"},
            "models": {name: file_sha256(model_file(name)) for name in _model_files(settings)}}


TABLES = ("faces.csv", "videos.csv", "failed_videos.csv")
LOCK = ".prepare_frames.lock"


def _claim_out(settings: FrameSettings, videos: list[VideoJob]) -> OutputDir:
    """The data root to write: ours (or new / empty), apart from the input videos, and made with these settings
    unless --overwrite; its record lists the class folders and tables this stage writes."""
    out = claim_output(settings.out, stage="prepare_frames", inputs=[("--videos-root", settings.videos_root)])
    record = out.path / SETTINGS_FILE
    if SETTINGS_FILE in out.entries and record.is_file() and not settings.overwrite:
        try:
            previous = json.loads(record.read_text(encoding="utf-8")).get("crops", {})
        except (OSError, ValueError, AttributeError):
            previous = {}
        changed = [f"{k} {previous.get(k)!r} -> {v!r}" for k, v in crop_recipe(settings).items()
                   if previous.get(k) != v]
        if changed:
            raise UserError(f"{out.path} was prepared with other settings ({'; '.join(changed)}); "
                            "pass --overwrite to redo every video, or choose another --out")
    out.own(SETTINGS_FILE, PARTS, *TABLES, *sorted({job.class_name for job in videos}))
    return out


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One run per output folder: two would rename over each other's videos."""
    with exclusive_lock(out / LOCK, str(out)):
        yield


def read_table(path: Path) -> pd.DataFrame:
    """One of the CSVs written here, with ids kept as text ("000" stays "000"), empty text kept
    empty and empty numbers (a fallback frame's score) read as NaN."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={name: str for name in STRING_COLUMNS if name in header}, keep_default_na=False,
                       na_values={name: [""] for name in header if name not in STRING_COLUMNS})


def _merge(plan: Plan, kind: str, columns: tuple[str, ...], sort: list[str]) -> pd.DataFrame:
    """Concatenate the parts of every finished video in the output (this run's and earlier runs')."""
    parts = sorted((plan.out / PARTS).glob(f"*/*.{kind}.csv"))
    tables = [read_table(p) for p in parts if (plan.out / p.parent.name / p.name[:-len(f".{kind}.csv")]).is_dir()]
    if not tables:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(tables, ignore_index=True).sort_values(sort, kind="stable", ignore_index=True)[list(columns)]


def _plan(settings: FrameSettings) -> Plan:
    return Plan(Path(settings.out), settings.frames, _recipe(settings), threads=0 if settings.jobs == 1 else 1,
                parent=os.getpid())


def _run_jobs(todo: list[VideoJob], plan: Plan, jobs: int) -> list[Outcome]:
    """Videos in parallel (joblib), results as they finish, with a progress bar."""
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(prepare_video)(job, plan) for job in todo)
    with tqdm(results, total=len(todo), unit="video", desc="frames", dynamic_ncols=True, file=sys.stderr) as bar:
        return list(bar)


def _write_tables(plan: Plan, failed: list[Outcome]) -> None:
    write_csv(plan.out / "faces.csv", _merge(plan, "faces", FACE_COLUMNS, ["class", "video", "frame"]))
    write_csv(plan.out / "videos.csv", _merge(plan, "video", VIDEO_COLUMNS, ["class", "video"]))
    rows = [{"class": o.job.class_name, "video": o.job.video, "source": str(o.job.source), "reason": o.reason}
            for o in failed]
    write_csv(plan.out / "failed_videos.csv", pd.DataFrame(rows, columns=list(FAILED_COLUMNS)))


def _start(plan: Plan, settings: FrameSettings) -> None:
    """Record the settings before any video, so a crashed run cannot be resumed with other ones."""
    if settings.overwrite:
        shutil.rmtree(plan.out / PARTS, ignore_errors=True)
    for folder in (plan.out / PARTS).glob("*"):
        remove_stale_temps(folder)
    write_json(plan.out / SETTINGS_FILE, {"crops": crop_recipe(settings), "settings": to_dict(settings),
                                          "packages": {**package_versions(), "clipforensics": __version__}})


def prepare(settings: FrameSettings) -> Summary:
    """Prepare every video under settings.videos_root into settings.out; skip the finished ones."""
    _validate(settings)
    videos = find_videos(settings)
    plan = _plan(settings)
    out_dir = _claim_out(settings, videos)
    with _lock(plan.out):
        _start(plan, settings)
        todo = [job for job in videos if not plan.is_done(job)]
        outcomes = _run_jobs(todo, plan, settings.jobs) if todo else []
        failed = sorted((o for o in outcomes if o.reason), key=lambda o: (o.job.class_name, o.job.video))
        _write_tables(plan, failed)
        layout = resolve_layout(Path(settings.videos_root), settings.layout)
        if layout in DATASET_LAYOUTS:
            root = Path(settings.videos_root)
            out_dir.own(*sorted({Path(rel).parts[0] for rel in DATA_LAYOUTS.get(layout).label_files(root)}))
            copy_label_files(root, plan.out, layout)
    done = [o for o in outcomes if not o.reason]
    if failed and len(failed) == len(videos):
        raise UserError(f"all {len(failed)} videos failed; first: {failed[0].job.source}: {failed[0].reason} "
                        f"(all listed in {plan.out / 'failed_videos.csv'})")
    return Summary(len(done), len(videos) - len(todo), len(failed), sum(o.frames for o in done),
                   sum(o.short for o in done), sum(o.fallbacks for o in done), plan.out)
