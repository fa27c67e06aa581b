"""Extract CLIP image and prompt embeddings from a FaceForensics++-style data root into an HDF5 cache.

    python extract_features.py --data-root DIR --model ViT-B-32 --pretrained openai --out cache/NAME.h5
    torchrun --nproc_per_node=4 extract_features.py ...          # ranks share the work, rank 0 assembles
    python extract_features.py ... --shard K/N                     # one of N jobs (e.g. a SLURM array)
    python extract_features.py merge ...                           # same options: assemble the N shards
"""

from __future__ import annotations

import argparse

from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.data.cache import read_cache
from clipforensics.data.manifest import ManifestSettings
from clipforensics.extract.models import ModelSettings
from clipforensics.extract.run import ExtractSettings, extract, summarize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=("merge",),
                        help="merge: assemble the shards of a --shard K/N run (same options as the shards); "
                             "without it: extract")
    add_arguments(parser, ManifestSettings, "data")
    add_arguments(parser, ModelSettings, "model")
    add_arguments(parser, ExtractSettings, "extraction")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    out = extract(from_namespace(ManifestSettings, ns), from_namespace(ModelSettings, ns),
                  from_namespace(ExtractSettings, ns), merge=ns.command == "merge")
    if out is not None:
        print(summarize(read_cache(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
