"""`python -m clipforensics.synthetic`: write the generated FaceForensics-shaped data set.

Options and defaults are SyntheticSettings' fields, the same as `generate()`'s keywords.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.synthetic.write import SyntheticSettings, write


def build_parser() -> argparse.ArgumentParser:
    """The command line; kept apart from `main` so docs and tests can render `--help`."""
    parser = argparse.ArgumentParser(
        prog="python -m clipforensics.synthetic",
        description="Write a small synthetic FaceForensics-shaped data set (real videos plus locally "
                    "manipulated fakes), deterministic from --seed.",
    )
    add_arguments(parser, SyntheticSettings)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    settings = from_namespace(SyntheticSettings, build_parser().parse_args(argv))
    root = write(settings)
    n_real = settings.videos * settings.frames
    print(f"wrote {n_real} real and {n_real * len(settings.manipulations)} fake frames to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
