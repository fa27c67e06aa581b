"""One exception type for bad input, so every command line ends with one clear line and exit 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input or settings the user can fix: printed as one line, never as a traceback."""


def _one_line(message: str) -> str:
    """A UserError raised in a DataLoader worker reaches the main process wrapped in the worker's
    traceback ("Caught UserError in DataLoader worker process 0. Original Traceback ..."); its own
    message is the last line."""
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith(f"{UserError.__name__}: ") else last
    return message


def cli_entry(func: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a `main(argv)` so a UserError becomes `error: ...` on stderr and exit code 2.

    A file-system error no stage anticipated (a disk that filled, a folder made read-only mid-run) is
    also one line naming the path, with exit code 2: finished work is on disk, half-written files are not.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        try:
            return func(*args, **kwargs) or 0
        except UserError as exc:
            print(f"error: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            print(f"error: file system:{where}: {_one_line(exc.strerror or str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def quiet_interrupts() -> None:
    """Make Ctrl-C during a script's start-up (torch, open_clip loading) one line and exit 130.

    `cli_entry` handles Ctrl-C once `main` runs; before that, the script's own imports are running and
    an interrupt would print a traceback of whatever module was loading. Called first thing in a
    script's `__main__` block, never on import.
    """
    def hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = hook
