"""Extract CLIP image and prompt embeddings from a FaceForensics++-style data root into an HDF5 cache.

    python extract_features.py --data-root DIR --model ViT-B-32 --pretrained openai --out cache/NAME.h5
"""

from __future__ import annotations

import argparse

from clipforensics.cache import read_cache
from clipforensics.errors import UserError, cli_entry
from clipforensics.extraction import ExtractSettings, extract, summarize
from clipforensics.manifest import ManifestSettings
from clipforensics.models import ModelSettings
from clipforensics.settings import add_arguments, from_namespace


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, ManifestSettings, "data")
    add_arguments(parser, ModelSettings, "model")
    add_arguments(parser, ExtractSettings, "extraction")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    manifest_settings = from_namespace(ManifestSettings, ns)
    if not manifest_settings.data_root:
        raise UserError("--data-root is required")
    out = extract(manifest_settings, from_namespace(ModelSettings, ns), from_namespace(ExtractSettings, ns))
    print(summarize(read_cache(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
