"""From videos to the data root extract_features.py reads: evenly sampled, face-cropped PNG frames.

    videos (any layout of data.layouts) -> sample N frames -> detect -> track one face -> landmarks
      -> align -> DATA_ROOT/<Class>/<video>/<frame>.png, faces.csv, videos.csv, failed_videos.csv,
         prepare.json (the recipe, read back by extract_features.py)

The run: which videos (inputs.py), each one in a worker (worker.py, run by jobs.py), then the data root's tables
merged from every finished video's parts and the data set's label files copied beside the frames (root.py).
Resumable: a rerun skips videos whose folder and parts exist. With `--shard K/N` (or under torchrun) a job
prepares its share of the videos into a folder beside the data root (shards.py), and `merge` (merge.py), or
torchrun's rank 0 once every rank is done, moves them in.
"""

from __future__ import annotations

from clipforensics.core.identity import Identity, check
from clipforensics.core.io import OutputDir, claim_output, remove_stale_temps, write_csv, write_json
from clipforensics.data.layouts import VideoFile
from clipforensics.frames.inputs import find_videos
from clipforensics.frames.jobs import (MERGE_HINT, Summary, failed_rows, make_plan, parallel_jobs, refuse_all_failed,
                                       run_videos, summarize)
from clipforensics.frames.merge import merge
from clipforensics.frames.recipe import validate
from clipforensics.frames.root import claim_root, copy_labels, lock, record_start, write_tables
from clipforensics.frames.settings import FrameSettings
from clipforensics.core.shards import Shard, current_shard
from clipforensics.frames.shards import DONE, FAILED, RECORD, STAGE, join, shard_dir, shard_identity
from clipforensics.frames.tables import PARTS


def _prepare_root(settings: FrameSettings, videos: list[VideoFile]) -> Summary:
    """Every video into the data root itself."""
    out_dir = claim_root(settings, videos)
    plan = make_plan(settings, out_dir.path)
    with lock(plan.out):
        record_start(plan.out, settings)
        todo = [job for job in videos if not plan.is_done(job)]
        outcomes = run_videos(todo, plan, parallel_jobs(settings))
        failed = failed_rows(outcomes)
        write_tables(plan.out, failed)
        copy_labels(settings, out_dir)
    refuse_all_failed(failed, len(videos), plan.out)
    return summarize(outcomes, len(videos) - len(todo), plan.out)


def _claim_shard(settings: FrameSettings, shard: Shard, identity: Identity, classes: list[str]) -> OutputDir:
    """The shard's folder: ours (or new), made with these settings unless --overwrite, which empties it (its own
    files only) so every video of the shard is redone."""
    folder = claim_output(shard_dir(settings.out, shard), stage=STAGE,
                          inputs=[("--videos-root", settings.videos_root)])
    if settings.overwrite:
        folder.clear()
    elif RECORD in folder.entries and (folder.path / RECORD).exists():
        recorded = folder.read_record(RECORD) or {}
        check(recorded.get("identity") or {}, identity, f"shard {shard.shown} ({folder.path})",
              remedy="pass --overwrite to redo this shard, or run it with the options it was started with")
    folder.own(RECORD, DONE, FAILED, PARTS, *classes)
    return folder


def _prepare_shard(settings: FrameSettings, videos: list[VideoFile], shard: Shard) -> Summary:
    """This shard's share of the videos into its own folder beside the data root; marked done when finished."""
    mine = shard.take(videos)
    identity = shard_identity(settings, videos)
    folder = _claim_shard(settings, shard, identity, sorted({job.class_name for job in mine}))
    plan = make_plan(settings, folder.path)
    with lock(plan.out):
        (plan.out / DONE).unlink(missing_ok=True)
        write_json(plan.out / RECORD, {"identity": identity, "shard": shard.rank, "shards": shard.world})
        for parts in (plan.out / PARTS).glob("*"):
            remove_stale_temps(parts)
        todo = [job for job in mine if not plan.is_done(job)]
        outcomes = run_videos(todo, plan, parallel_jobs(settings))
        write_csv(plan.out / FAILED, failed_rows(outcomes))
        write_json(plan.out / DONE, {"shard": shard.rank, "shards": shard.world, "videos": len(mine)})
    hint = f"rank 0 merges every shard into {settings.out}" if shard.torchrun else MERGE_HINT
    return summarize(outcomes, len(mine) - len(todo), plan.out, f"shard {shard.shown}: ", hint)


def prepare(settings: FrameSettings) -> Summary:
    """Prepare every video under settings.videos_root into settings.out, or this shard's share of them beside it;
    skip the finished ones. Under torchrun, rank 0 merges once every rank has finished its shard."""
    validate(settings)
    shard = current_shard(settings.shard)
    videos = find_videos(settings)
    if shard.single:
        return _prepare_root(settings, videos)
    try:
        join(shard)
        summary = _prepare_shard(settings, videos, shard)
        shard.barrier()  # every rank has finished its shard
        return merge(settings) if shard.torchrun and shard.leader else summary
    finally:
        shard.leave()

