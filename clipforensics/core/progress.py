"""Progress bars, the one rule for every stage: drawn on a terminal only, never redrawn into a log or a pipe.

tqdm's `disable=None` turns a bar off when its stream is not a TTY, so `make demo > log` holds the stages'
results, not hundreds of redraws; `enabled=False` (a torchrun rank that is not the leader) turns it off anywhere.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, TextIO

from tqdm import tqdm


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", leave: bool = True, enabled: bool = True, file: TextIO | None = None) -> tqdm:
    """A tqdm bar on `file` (stderr), shown only where that stream is a terminal and `enabled`."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                file=file or sys.stderr, disable=None if enabled else True)


def say(line: str, file: TextIO | None = None) -> None:
    """A line printed above any bar being drawn, without breaking it."""
    tqdm.write(line, file=file or sys.stdout)
