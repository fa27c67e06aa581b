"""`python -m clipforensics.synthetic`: write the generated FaceForensics-shaped data set.

Options and defaults are SyntheticSettings' fields, the same as `generate()`'s keywords.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from clipforensics.core.errors import cli_entry
from clipforensics.core.registry import SuggestingParser
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.data.layouts import scan
from clipforensics.data.manifest import ManifestSettings
from clipforensics.synthetic.write import SyntheticSettings, write


def build_parser() -> argparse.ArgumentParser:
    """The command line; kept apart from `main` so docs and tests can render `--help`."""
    parser = SuggestingParser(
        prog="python -m clipforensics.synthetic",
        description="Write a small synthetic FaceForensics-shaped data set (real videos plus locally "
                    "manipulated fakes), deterministic from --data-seed; --style celebdf writes it in Celeb-DF v2's "
                    "layout with its test list and a domain shift (backgrounds, lighting, resolution, JPEG).",
    )
    add_arguments(parser, SyntheticSettings)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    settings = from_namespace(SyntheticSettings, build_parser().parse_args(argv))
    root = write(settings)
    labels = scan(ManifestSettings(data_root=str(root)))["label"].value_counts()
    print(f"wrote {labels.get(0, 0)} real and {labels.get(1, 0)} fake frames to {root} ({settings.style} layout)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
