"""Shared by the reliability tests: how a failure must look, and what the folder must hold afterwards."""

from __future__ import annotations

from pathlib import Path


def one_line_error(capsys) -> str:
    """stderr ends with exactly one `error: ...` line and holds no traceback; returns that line."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert err and err[-1].startswith("error:"), err
    assert sum(line.startswith("error:") for line in err) == 1, err
    assert not any("Traceback" in line for line in err), err
    return err[-1]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry below `folder` with its bytes (None for folders): compare before and after a command."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}
