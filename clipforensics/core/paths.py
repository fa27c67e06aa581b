"""Temporary names tied to the process that writes them, and the clean-up of what a dead process left.

Kept apart from `core.io` so the ownership records (`core.ownership`) can recognise temporaries without
importing the writers that record into them.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import socket
from pathlib import Path

TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?:(?P<host>[A-Za-z0-9_]+)-)?(?P<pid>\d+)"
                  r"(?:-(?P<start>\d+))?(?P<suffix>\.[A-Za-z0-9]+)?$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, field 22 of /proc/PID/stat); None where the
    process is gone or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 1:].split()  # the command name in (...) may hold spaces
    return fields[19] if len(fields) > 19 else None


def temp_sibling(final: str | os.PathLike, kind: str = "tmp", suffix: str = "") -> Path:
    """`.NAME.tmp-HOST-PID-START[suffix]` beside `final`: hidden, tied to this process, recognisable after a kill.

    The host is part of the name because folders may be shared between machines (shard jobs): only a
    temporary of this machine can be judged dead. The process's start time is part of it because a
    process id alone is reused: pid_max is often 32768 and threads draw from the same counter, so on a busy
    machine a killed run's id may belong to a new process by the time the next run looks, and the dead
    run's temporary would be kept as live (START is left out where /proc is missing).
    """
    final = Path(final)
    pid = os.getpid()
    start = _start_time(pid)
    return final.with_name(f".{final.name}.{kind}-{_host()}-{pid}{f'-{start}' if start else ''}{suffix}")


def _pid_alive(pid: int, host: str | None, start: str | None = None) -> bool:
    """Whether the process that wrote a temporary may still be writing it (another host's: assumed so)."""
    if host is not None and host != _host():
        return True
    if start is not None:  # the same id with another start time is another process: the writer is gone
        return _start_time(pid) == start
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Temporaries in `folder` whose writing process is gone (a kill -9, a power cut)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = TEMP.match(entry.name)
        if match and not _pid_alive(int(match["pid"]), match["host"], match["start"]):
            found.append(entry)
    return found


def remove_path(path: Path) -> None:
    """A file, link or whole folder; links are removed, never followed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Remove what dead runs left in `folder`; return how many entries went."""
    stale = stale_temps(folder)
    for entry in stale:
        with contextlib.suppress(FileNotFoundError):
            remove_path(entry)
    return len(stale)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE): a kill leaves one or the other in place,
    never neither. False where the system or file system cannot, and nothing was changed."""
    if _renameat2 is None:
        return False
    return _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes: what runs record of the files they write, and check when they load them."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
