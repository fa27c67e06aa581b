"""`prepare_frames.py merge`: the shards of a `--shard K/N` run moved into the data root, which then holds what one
plain run writes: the same frame files, faces.csv, videos.csv, failed_videos.csv and prepare.json.

Refused in one line before anything moves: shards of different N, a shard made with other settings (every
differing field named, with both values), a missing shard and an unfinished one (or one still running: its lock is
held). Each finished video moves in by itself (its rows copied, then its folder renamed into place, then the
shard's rows removed), so a merge killed half-way is finished by running it again: a video already moved is in
the data root, whose record covers it. A shard whose videos all reached the data root may be gone (the clean-up
after a merge): its failures are then read back from the data root's failed_videos.csv. Shard folders are
removed file by recorded file once the tables are written; anything else found in them stays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.identity import Identity, check
from clipforensics.core.io import atomic_path, install_dir, read_json_object, remove_stale_temps
from clipforensics.core.ownership import JOURNAL, RECORD as OWNER_RECORD, read_record, remove_owned
from clipforensics.data.layouts import VideoFile
from clipforensics.frames.inputs import find_videos
from clipforensics.frames.jobs import Summary, make_plan, refuse_all_failed, shown, sort_failed, summarize
from clipforensics.frames.recipe import validate
from clipforensics.frames.root import STAGE, claim_root, copy_labels, lock, record_start, write_tables
from clipforensics.frames.settings import FrameSettings
from clipforensics.core.shards import Shard
from clipforensics.frames.shards import DONE, FAILED, RECORD, found, shard_identity, shards_root
from clipforensics.frames.tables import FAILED_COLUMNS, read_table
from clipforensics.frames.worker import Outcome, Plan

Name = tuple[str, str]


@dataclass(frozen=True)
class Previous:
    """What the data root held before this merge: its finished videos and its failed_videos.csv (both empty under
    --overwrite, which redoes the data root from the shards)."""

    done: frozenset[Name]
    failed: pd.DataFrame

    @functools.cached_property
    def failed_names(self) -> frozenset[Name]:
        return frozenset(zip(self.failed["class"], self.failed["video"]))

    def accounted(self, job: VideoFile) -> bool:
        """Whether a video needs no shard: finished in the data root, or listed there as failed."""
        return (job.class_name, job.video) in self.done or name_of(job) in self.failed_names


def name_of(job: VideoFile) -> Name:
    """A video's (class, video) as failed_videos.csv writes them."""
    return shown(job.class_name), shown(job.video)


def _world(shards: dict[Shard, Path], out: str) -> int | None:
    """N of the shards found; refused when they are of different runs."""
    worlds = {shard.world for shard in shards}
    if len(worlds) > 1:
        names = ", ".join(path.name for path in sorted(shards.values()))
        raise UserError(f"shards of different N in {shards_root(out)} ({names}): remove the folders of the "
                        "run you do not want, then merge")
    return worlds.pop() if worlds else None


def _previous(plan: Plan, videos: list[VideoFile], settings: FrameSettings) -> Previous:
    empty = pd.DataFrame(columns=list(FAILED_COLUMNS))
    record = read_record(plan.out) if plan.out.is_dir() else None
    if settings.overwrite or record is None or record.stage != STAGE:
        return Previous(frozenset(), empty)
    table = plan.out / "failed_videos.csv"
    failed = read_table(table) if "failed_videos.csv" in record.entries and table.is_file() else empty
    return Previous(frozenset((v.class_name, v.video) for v in videos if plan.is_done(v)), failed)


def _check(shards: dict[Shard, Path], world: int | None, identity: Identity, videos: list[VideoFile],
           previous: Previous, out: str) -> dict[Shard, Path]:
    """The shards to merge, in order, once none is of other settings, missing or unfinished."""
    if world is None:
        if all(previous.accounted(job) for job in videos):
            return {}  # merged before: nothing left to move
        raise UserError(f"no shards in {shards_root(out)}: run prepare_frames.py --shard K/N (K = 0..N-1) with "
                        "these options first")
    ordered = dict(sorted(shards.items(), key=lambda item: item[0].rank))
    for shard, folder in ordered.items():
        recorded = read_json_object(folder / RECORD, f"the record of shard {shard.shown}")
        check(recorded.get("identity") or {}, identity, f"shard {shard.shown} ({folder})",
              remedy="rerun that shard with these options and --overwrite, or merge with the options it was run with")
    missing = [Shard(k, world) for k in range(world) if Shard(k, world) not in shards
               and not all(previous.accounted(job) for job in Shard(k, world).take(videos))]
    if missing:
        raise UserError(f"missing shard{'s' if len(missing) > 1 else ''} {', '.join(s.shown for s in missing)} "
                        f"(nothing in {shards_root(out)}): run {'them' if len(missing) > 1 else 'it'} with "
                        "--shard K/N first, then merge")
    unfinished = [shard for shard, folder in ordered.items() if not (folder / DONE).is_file()]
    if unfinished:
        raise UserError(f"shard{'s' if len(unfinished) > 1 else ''} {', '.join(s.shown for s in unfinished)} "
                        f"unfinished (no {DONE}): rerun {'them' if len(unfinished) > 1 else 'it'} to finish "
                        "(finished videos are kept), then merge")
    return ordered


def _move_in(folder: Path, mine: list[VideoFile], plan: Plan) -> list[Outcome]:
    """Every finished video of one shard into the data root: rows copied, folder renamed in, the shard's rows
    removed last, so a kill at any point leaves each video finished in one of the two places."""
    source = dataclasses.replace(plan, out=folder)
    outcomes = []
    for job in mine:
        if not source.is_done(job):
            continue
        row = read_table(source.part(job, "video")).iloc[0]
        for kind in ("faces", "video"):
            with atomic_path(plan.part(job, kind)) as tmp:
                shutil.copyfile(source.part(job, kind), tmp)
        plan.video_dir(job).parent.mkdir(parents=True, exist_ok=True)
        install_dir(source.video_dir(job), plan.video_dir(job))
        for kind in ("faces", "video"):
            source.part(job, kind).unlink()
        outcomes.append(Outcome(job, frames=int(row["frames_written"]), short=bool(row["short"]),
                                fallbacks=int(row["fallbacks"])))
    return outcomes


def _failed(shards: dict[Shard, Path], previous: Previous, plan: Plan, videos: list[VideoFile]) -> pd.DataFrame:
    """failed_videos.csv: the shards' failures (the data root's earlier ones for shards already cleaned up), for
    input videos that are not finished in the data root."""
    tables = [read_table(folder / FAILED) for folder in shards.values() if (folder / FAILED).is_file()]
    rows = pd.concat([t for t in [*tables, previous.failed] if len(t)] or [previous.failed.iloc[:0]],
                     ignore_index=True)
    wanted = {name_of(job) for job in videos if not plan.is_done(job)}
    keep = pd.Series([(c, v) in wanted for c, v in zip(rows["class"], rows["video"])], index=rows.index, dtype=bool)
    return sort_failed(rows[keep].drop_duplicates(["class", "video"], ignore_index=True))


def _empty(folder: Path) -> None:
    """What the shard wrote, file by recorded file (its videos have moved out), and the folders that left empty;
    foreign files stay."""
    for below, _, _ in os.walk(folder):
        remove_stale_temps(below)
    record = read_record(folder)
    if record is not None:
        remove_owned(folder, record, sorted(record.entries))
        for name in record.entries:
            for below, _, _ in sorted(os.walk(folder / name), key=lambda walked: -len(walked[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(below)
    for name in (OWNER_RECORD, JOURNAL):
        (folder / name).unlink(missing_ok=True)


def merge(settings: FrameSettings) -> Summary:
    """Assemble the shards beside settings.out into it; the summary counts the videos moved in."""
    validate(settings)
    if settings.shard:
        raise UserError("merge takes every shard of the run: leave out --shard")
    videos = find_videos(settings)
    shards = found(settings.out)
    world = _world(shards, settings.out)
    identity = shard_identity(settings, videos)
    plan = make_plan(settings, Path(settings.out))
    _check(shards, world, identity, videos, _previous(plan, videos, settings), settings.out)  # before any write
    out_dir = claim_root(settings, videos)
    with contextlib.ExitStack() as held:
        held.enter_context(lock(plan.out))
        for folder in shards.values():  # a shard still running holds its lock: refused here
            held.enter_context(lock(folder))
        previous = _previous(plan, videos, settings)  # again, now that nothing else writes
        ordered = _check(shards, world, identity, videos, previous, settings.out)
        record_start(plan.out, settings)
        outcomes = [o for shard, folder in ordered.items() for o in _move_in(folder, shard.take(videos), plan)]
        failed = _failed(ordered, previous, plan, videos)
        write_tables(plan.out, failed)
        copy_labels(settings, out_dir)
        for folder in ordered.values():
            _empty(folder)
    for folder in [*ordered.values(), shards_root(settings.out)]:
        with contextlib.suppress(OSError):
            folder.rmdir()
    refuse_all_failed(failed, len(videos), plan.out)
    skipped = len(previous.done - {(o.job.class_name, o.job.video) for o in outcomes})
    head = f"merged {len(ordered)} shard{'s' if len(ordered) != 1 else ''}: "
    return dataclasses.replace(summarize(outcomes, skipped, plan.out, head), failed=len(failed))
