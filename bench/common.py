"""Small helpers shared by the benchmarks: timing, quiet calls, Markdown tables, the command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never download anything
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Swallow stdout/stderr (progress bars, summaries) of the code under test."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The exact command that produced this output, relative to the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", script, *sys.argv[1:]])


def machine() -> str:
    import torch
    return (f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average {os.getloadavg()[0]:.1f} at start")


def met(value: float, goal: float, higher_is_better: bool = True) -> str:
    return "yes" if (value >= goal if higher_is_better else value <= goal) else "**no**"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the docstring's layout and shows every default."""
