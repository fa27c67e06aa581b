"""HDF5 writes kept away from a full disk, and out of the stage's process.

h5py 3.16 raises when the disk fills in the middle of a write and then crashes the interpreter (segfault)
while closing the file, whether HDF5 writes the file itself or through a Python file object (measured on a
256 KiB tmpfs). So the space a cache needs is checked before writing, and the write runs in a forked child:
a disk filled by someone else meanwhile kills the child, and the stage reports one line.
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Callable

MARGIN = 16 * 1024 * 1024  # HDF5's own structures, beyond the estimate
PR_SET_PDEATHSIG = 1


def check_space(path: Path, need: int) -> None:
    """ENOSPC before anything is written when the folder has less free space than `need` bytes (and a margin)."""
    free = shutil.disk_usage(path.parent).free
    if free < need + MARGIN:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (needs {(need + MARGIN) / 2**20:.0f} MiB, "
                                    f"{free / 2**20:.0f} MiB free)", str(path))


def _die_with_parent() -> None:
    """A kill -9 of the stage must not leave its writer running (Linux; elsewhere it finishes alone); a crash of
    the writer is the stage's one line, not a dump of the writer's stack."""
    faulthandler.disable()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def in_child(work: Callable[[], None], path: Path) -> None:
    """Run `work` in a forked child (it sees this process's memory without copying it); its OSError, or its
    death, is raised here as an OSError naming `path`."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup
        os.close(read_end)
        _die_with_parent()
        status = 0
        try:
            work()
        except BaseException as exc:  # reported to the parent, whatever it was
            os.write(write_end, json.dumps({"errno": getattr(exc, "errno", None),
                                            "why": getattr(exc, "strerror", None) or str(exc)}).encode())
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status == 0:
        return
    if message:
        sent = json.loads(message)
        raise OSError(sent["errno"] or errno.EIO, sent["why"], str(path))
    code = os.waitstatus_to_exitcode(status)
    died = f"the HDF5 writer died ({signal.Signals(-code).name if code < 0 else code})"
    if shutil.disk_usage(path.parent).free < MARGIN:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {died}", str(path))
    raise OSError(errno.EIO, died, str(path))
