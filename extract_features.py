"""Extract CLIP image and prompt embeddings from a FaceForensics++-style data root into an HDF5 cache.

    python extract_features.py --data-root DIR --model ViT-B-32 --pretrained openai --out cache/NAME.h5
    torchrun --nproc_per_node=4 extract_features.py ...          # ranks share the work, rank 0 assembles
    python extract_features.py ... --shard K/N                     # one of N jobs (e.g. a SLURM array)
    python extract_features.py merge ...                           # same options: assemble the N shards
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse

from clipforensics.core.commands import Command, run_command
from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.data.manifest import ManifestSettings
from clipforensics.extract.settings import ExtractSettings, ModelSettings


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, ManifestSettings, "data")
    add_arguments(parser, ModelSettings, "model")
    add_arguments(parser, ExtractSettings, "extraction")


def run(ns: argparse.Namespace, merge: bool = False) -> None:
    """The stage, imported only now that the options parsed: torch, open_clip and h5py take seconds to load, which
    `--help` and a mistyped option never wait for."""
    from clipforensics.data.cache import read_cache
    from clipforensics.extract.run import extract, summarize

    out = extract(from_namespace(ManifestSettings, ns), from_namespace(ModelSettings, ns),
                  from_namespace(ExtractSettings, ns), merge=merge)
    if out is not None:
        print(summarize(read_cache(out)))


COMMANDS = {
    "extract": Command("embed the data root's frames and the prompt sets into a cache (the default command)",
                       add_extract_arguments, run),
    "merge": Command("assemble the shards of a --shard K/N run into the cache (same options as the shards)",
                     add_extract_arguments, lambda ns: run(ns, merge=True)),
}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    return run_command(COMMANDS, "extract", argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
