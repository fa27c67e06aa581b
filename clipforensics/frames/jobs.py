"""Videos through the workers into one folder (the data root, or a shard's folder), and what came of them.

Shared by the plain run, a `--shard K/N` job and the merge: the same plan for a worker, the same parallel run, the
same failed-videos table and the same closing line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from joblib import Parallel, cpu_count, delayed

from clipforensics.core.errors import UserError
from clipforensics.core.progress import progress
from clipforensics.data.layouts import VideoFile
from clipforensics.frames.recipe import recipe
from clipforensics.frames.settings import FrameSettings
from clipforensics.frames.tables import FAILED_COLUMNS
from clipforensics.frames.worker import Outcome, Plan, prepare_video

MERGE_HINT = "when every shard is done, run `prepare_frames.py merge` with the same options"


@dataclass(frozen=True)
class Summary:
    """Counts for the closing line, and where the tables are (`head`: which shard or merge speaks;
    `next_step`: what to run next, for a shard, in place of where the tables are)."""

    prepared: int
    skipped: int
    failed: int
    frames: int
    short: int
    fallbacks: int
    out: Path
    head: str = ""
    next_step: str = ""

    def line(self, requested: int) -> str:
        text = (f"{self.head}prepared {self.prepared} videos ({self.frames} frames), skipped {self.skipped} "
                f"already finished, {self.failed} failed")
        if self.failed:
            text += f" (listed in {self.out / 'failed_videos.csv'})"
        if self.short:
            text += f"; {self.short} shorter than {requested} frames (all their frames kept)"
        if self.fallbacks:
            text += f"; {self.fallbacks} frames without a detected face (fallback crop)"
        return text + (f"; {self.next_step}" if self.next_step else f"; boxes in {self.out / 'faces.csv'}")


def summarize(outcomes: list[Outcome], skipped: int, out: Path, head: str = "", next_step: str = "") -> Summary:
    """The closing counts of the videos this run wrote or failed."""
    done = [o for o in outcomes if not o.reason]
    return Summary(len(done), skipped, len(outcomes) - len(done), sum(o.frames for o in done),
                   sum(o.short for o in done), sum(o.fallbacks for o in done), out, head, next_step)


def parallel_jobs(settings: FrameSettings) -> int:
    """joblib's n_jobs for --workers: 0 runs in the main process; by default one worker per CPU core, shared
    among the ranks torchrun starts on this node (LOCAL_WORLD_SIZE), which would otherwise each take them all."""
    if settings.workers is not None:
        return max(1, settings.workers)
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return -1 if ranks <= 1 else max(1, cpu_count() // ranks)


def make_plan(settings: FrameSettings, out: Path) -> Plan:
    """The worker's plan for writing into `out`: one OpenCV thread per worker when videos run in parallel."""
    return Plan(out, settings.frames, recipe(settings), threads=0 if parallel_jobs(settings) == 1 else 1,
                parent=os.getpid())


def run_videos(todo: list[VideoFile], plan: Plan, jobs: int) -> list[Outcome]:
    """Videos in parallel (joblib), results as they finish, with a progress bar."""
    if not todo:
        return []
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(prepare_video)(job, plan) for job in todo)
    with progress(results, total=len(todo), unit="video", desc="frames") as bar:
        return list(bar)


def shown(name: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def failed_rows(outcomes: list[Outcome]) -> pd.DataFrame:
    """failed_videos.csv's rows for the videos that failed, in class then video order."""
    rows = [{"class": shown(o.job.class_name), "video": shown(o.job.video), "source": shown(str(o.job.source)),
             "reason": o.reason} for o in outcomes if o.reason]
    return sort_failed(pd.DataFrame(rows, columns=list(FAILED_COLUMNS)))


def sort_failed(table: pd.DataFrame) -> pd.DataFrame:
    """The one order of failed_videos.csv, whichever runs its rows come from."""
    return table.sort_values(["class", "video"], kind="stable", ignore_index=True)[list(FAILED_COLUMNS)]


def refuse_all_failed(failed: pd.DataFrame, total: int, out: Path) -> None:
    """Every video failing is a one-line error (a wrong codec, a wrong folder), not a data root of nothing."""
    if total and len(failed) == total:
        first = failed.iloc[0]
        raise UserError(f"all {total} videos failed; first: {first['source']}: {first['reason']} "
                        f"(all listed in {out / 'failed_videos.csv'})")
