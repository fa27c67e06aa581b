"""From videos to the data root extract_features.py reads: evenly sampled, face-cropped PNG frames.

    videos (any layout of data.layouts) -> sample N frames -> detect -> track one face -> landmarks
      -> align -> DATA_ROOT/<Class>/<video>/<frame>.png, faces.csv, videos.csv, failed_videos.csv,
         prepare.json (the recipe, read back by extract_features.py)

The run: which videos (inputs.py), each one in a worker (worker.py), then the tables merged from every
finished video's parts (tables.py) and the data set's label files copied beside the frames. Resumable:
a rerun skips videos whose folder and parts exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
from joblib import Parallel, delayed
from clipforensics.core.progress import progress

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, claim_output, exclusive_lock, remove_stale_temps, write_csv, write_json
from clipforensics.core.settings import to_dict
from clipforensics.data.crops import PREPARE_FILE
from clipforensics.data.layouts import VideoFile, copy_label_files, resolve_videos
from clipforensics.frames.detectors import package_versions
from clipforensics.frames.inputs import find_videos
from clipforensics.frames.settings import FrameSettings, crop_recipe, recipe, validate
from clipforensics.frames.tables import FACE_COLUMNS, FAILED_COLUMNS, PARTS, TABLES, VIDEO_COLUMNS, merge_parts
from clipforensics.frames.worker import Outcome, Plan, prepare_video

LOCK = ".prepare_frames.lock"


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


def _claim_out(settings: FrameSettings, videos: list[VideoFile]) -> OutputDir:
    """The data root to write: ours (or new / empty), apart from the input videos, and made with these settings
    unless --overwrite; its record lists the class folders and tables this stage writes."""
    out = claim_output(settings.out, stage="prepare_frames", inputs=[("--videos-root", settings.videos_root)])
    record = out.path / PREPARE_FILE
    if PREPARE_FILE in out.entries and record.is_file() and not settings.overwrite:
        try:
            previous = json.loads(record.read_text(encoding="utf-8")).get("crops", {})
        except (OSError, ValueError, AttributeError):
            previous = {}
        changed = [f"{k} {previous.get(k)!r} -> {v!r}" for k, v in crop_recipe(settings).items()
                   if previous.get(k) != v]
        if changed:
            raise UserError(f"{out.path} was prepared with other settings ({'; '.join(changed)}); "
                            "pass --overwrite to redo every video, or choose another --out")
    out.own(PREPARE_FILE, PARTS, *TABLES, *sorted({job.class_name for job in videos}))
    return out


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One run per output folder: two would rename over each other's videos."""
    with exclusive_lock(out / LOCK, str(out)):
        yield


def _plan(settings: FrameSettings) -> Plan:
    """The worker's plan: one OpenCV thread per worker when videos run in parallel."""
    return Plan(Path(settings.out), settings.frames, recipe(settings), threads=0 if settings.jobs == 1 else 1,
                parent=os.getpid())


def _run_jobs(todo: list[VideoFile], plan: Plan, jobs: int) -> list[Outcome]:
    """Videos in parallel (joblib), results as they finish, with a progress bar."""
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(prepare_video)(job, plan) for job in todo)
    with progress(results, total=len(todo), unit="video", desc="frames") as bar:
        return list(bar)


def shown(name: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _write_tables(out: Path, failed: list[Outcome]) -> None:
    """faces.csv and videos.csv merged from every finished video, failed_videos.csv from this run."""
    write_csv(out / "faces.csv", merge_parts(out, "faces", FACE_COLUMNS, ["class", "video", "frame"]))
    write_csv(out / "videos.csv", merge_parts(out, "video", VIDEO_COLUMNS, ["class", "video"]))
    rows = [{"class": shown(o.job.class_name), "video": shown(o.job.video), "source": shown(str(o.job.source)),
             "reason": o.reason} for o in failed]
    write_csv(out / "failed_videos.csv", pd.DataFrame(rows, columns=list(FAILED_COLUMNS)))


def _start(plan: Plan, settings: FrameSettings) -> None:
    """Record the settings before any video, so a crashed run cannot be resumed with other ones."""
    if settings.overwrite:
        shutil.rmtree(plan.out / PARTS, ignore_errors=True)
    for folder in (plan.out / PARTS).glob("*"):
        remove_stale_temps(folder)
    write_json(plan.out / PREPARE_FILE, {"crops": crop_recipe(settings), "settings": to_dict(settings),
                                         "packages": {**package_versions(), "clipforensics": __version__}})


def _copy_label_files(settings: FrameSettings, out_dir: OutputDir, out: Path) -> None:
    """The data set's label files (none for class folders) beside its frames, so they are read with the same labels."""
    root = Path(settings.videos_root)
    layout = resolve_videos(root, settings.layout)
    out_dir.own(*sorted({Path(rel).parts[0] for rel in layout.label_files(root)}))
    copy_label_files(root, out, layout)


def prepare(settings: FrameSettings) -> Summary:
    """Prepare every video under settings.videos_root into settings.out; skip the finished ones."""
    validate(settings)
    videos = find_videos(settings)
    plan = _plan(settings)
    out_dir = _claim_out(settings, videos)
    with _lock(plan.out):
        _start(plan, settings)
        todo = [job for job in videos if not plan.is_done(job)]
        outcomes = _run_jobs(todo, plan, settings.jobs) if todo else []
        failed = sorted((o for o in outcomes if o.reason), key=lambda o: (o.job.class_name, o.job.video))
        _write_tables(plan.out, failed)
        _copy_label_files(settings, out_dir, plan.out)
    done = [o for o in outcomes if not o.reason]
    if failed and len(failed) == len(videos):
        raise UserError(f"all {len(failed)} videos failed; first: {failed[0].job.source}: {failed[0].reason} "
                        f"(all listed in {plan.out / 'failed_videos.csv'})")
    return Summary(len(done), len(videos) - len(todo), len(failed), sum(o.frames for o in done),
                   sum(o.short for o in done), sum(o.fallbacks for o in done), plan.out)
