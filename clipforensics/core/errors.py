"""One exception type for bad input, so every command line ends with one clear line and exit 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input or settings the user can fix: printed as one line, never as a traceback."""


def cli_entry(func: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a `main(argv)` so a UserError becomes `error: ...` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        try:
            return func(*args, **kwargs) or 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
