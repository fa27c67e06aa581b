"""Turn FaceForensics++ videos (or one folder of videos per class) into the face-cropped data root
that extract_features.py reads, offline: N evenly spaced frames per video, one tracked face per
video, crops aligned on dlib's 5 landmarks (DeepfakeBench's detector, scale 1.3 and 256 px).

    python prepare_frames.py --videos-root DIR --out DATA_ROOT --frames-per-video 32
    python prepare_frames.py ... --shard K/N          # one of N jobs (e.g. a SLURM array), into DATA_ROOT.shards/
    python prepare_frames.py merge ...                # same options: move the N shards into DATA_ROOT
    torchrun --nproc_per_node=4 prepare_frames.py ... # ranks share the videos, rank 0 merges
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse

from clipforensics.core.commands import Command, run_command
from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.frames.settings import FrameSettings


def add_frame_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, FrameSettings, "frames")


def run(ns: argparse.Namespace, merge: bool = False) -> None:
    """The stage, imported only now: OpenCV, dlib and joblib load after the options are parsed."""
    settings = from_namespace(FrameSettings, ns)
    if merge:
        from clipforensics.frames.merge import merge as stage
    else:
        from clipforensics.frames.prepare import prepare as stage
    print(stage(settings).line(settings.frames))


COMMANDS = {
    "prepare": Command("crop the faces of the videos into the data root, or one shard of them with --shard K/N "
                       "(the default command)", add_frame_arguments, run),
    "merge": Command("move the shards of a --shard K/N run into the data root (same options as the shards)",
                     add_frame_arguments, lambda ns: run(ns, merge=True)),
}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    return run_command(COMMANDS, "prepare", argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
