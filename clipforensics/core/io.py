"""Safe file-system work shared by every stage.

- Atomic writes: a file at a final path is always complete (write a temporary sibling, then rename).
- Owned outputs: a stage writes only into a folder it created or recorded as its own, replaces only the
  entries it wrote, and never writes where one of its inputs lives (`claim_output`, `OutputDir`).
- Finished folders move into place in one rename (`install_dir`); temporaries a killed run left behind
  are recognised by name and removed by the next run (`remove_stale_temps`).
- Locks that die with their process and are never inherited by forked workers (`exclusive_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from clipforensics.core.errors import UserError

RECORD = ".clipforensics-output.json"
"""The record an output folder carries of its own entries (top-level names, files or folders)."""
RECORD_VERSION = 1
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?:(?P<host>[A-Za-z0-9_]+)-)?(?P<pid>\d+)"
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
        match = _TEMP.match(entry.name)
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


def user_os_error(exc: OSError, doing: str) -> UserError:
    """One readable line for a failed file-system call: what, where, why (disk full, permission, ...)."""
    where = f" {exc.filename}" if exc.filename else ""
    why = exc.strerror or str(exc)
    hint = " (free some space and rerun: finished work is kept)" if exc.errno == errno.ENOSPC else ""
    return UserError(f"cannot {doing}{where}: {why}{hint}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it onto `final` only if the block succeeds.

    The temporary name keeps `suffix` (e.g. ".png") so libraries that infer a format still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final, "tmp", suffix or final.suffix)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A JSON object another stage wrote (a run's record, a cache's sidecar), or one line saying which file and
    `what` it should be: a missing, unreadable or non-object file is never half-read."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing: {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({str(exc).splitlines()[0]}): {what}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object: {what}")
    return data


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def sidecar(path: str | os.PathLike, ext: str = ".json") -> Path:
    """`NAME.h5` -> `NAME.h5.json`: appended, never substituted, so it can never be the output itself."""
    path = Path(path)
    return path.with_name(path.name + ext)


def install_dir(tmp: Path, final: Path) -> None:
    """Rename a finished folder into place; an old one (a redo) is moved aside first, then removed.

    Readers see the old folder or the new one, never a mix; a kill between the two renames leaves the
    old one under a `.old-PID` name that `remove_stale_temps` clears.
    """
    old = temp_sibling(final, "old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold `lock_path` for the block; a second writer of `what` fails at once with one clear line.

    POSIX record locks (`lockf`) belong to the process: a forked worker (DataLoader) does not inherit
    them, so the lock is released the moment its holder dies, whatever its children do.
    """
    while True:
        try:
            fh = open(lock_path, "a")
        except OSError as exc:
            raise user_os_error(exc, "create the lock file") from None
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise UserError(f"another process is writing {what} (lock {lock_path} is held)") from None
            raise
        try:  # the previous holder may have removed the file between our open and our lock
            if os.fstat(fh.fileno()).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        fh.close()


# ---------------------------------------------------------------- owned outputs


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.realpath(path)))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_apart(out: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike | None]],
                flag: str = "--out") -> None:
    """Refuse an output that equals, contains or sits inside an input (named, e.g. ("--cache", path)).

    Links are resolved first, so a link to the data root counts as the data root.
    """
    target = _resolved(out)
    for name, path in inputs:
        if path is None or str(path) == "":
            continue
        source = _resolved(path)
        if target == source:
            raise UserError(f"{flag} {out} is the input {name} {path}; name another {flag}")
        if _within(source, target):
            raise UserError(f"{flag} {out} contains the input {name} {path}; name another {flag}")
        if _within(target, source) and source.is_dir():
            raise UserError(f"{flag} {out} is inside the input {name} {path}; name another {flag}")


def _is_internal(entry: Path) -> bool:
    """Entries a folder may hold besides its record: locks and temporaries of live runs."""
    name = entry.name
    return name == RECORD or (name.startswith(".") and name.endswith(".lock")) or bool(_TEMP.match(name))


def _is_nested_output(entry: Path) -> bool:
    """A sub-folder with its own record is another stage's output (e.g. a report's matrix/): left alone."""
    return entry.is_dir() and not entry.is_symlink() and (entry / RECORD).is_file()


@dataclass
class OutputDir:
    """A folder one stage owns: the entries it wrote are listed in its record; nothing else is touched."""

    path: Path
    stage: str
    entries: set[str] = field(default_factory=set)

    @classmethod
    def record_built(cls, folder: Path, stage: str) -> "OutputDir":
        """Record every entry of a folder this process built privately (a temporary sibling about to be
        installed with `install_dir`): nobody else can have written into it."""
        owned = cls(folder, stage, {p.name for p in folder.iterdir() if not _is_internal(p)})
        owned._save()
        return owned

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    def _save(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.record_path, {"stage": self.stage, "entries": sorted(self.entries),
                                          "version": RECORD_VERSION})
        except OSError as exc:
            raise user_os_error(exc, f"write into {self.path}") from None

    def foreign(self) -> list[Path]:
        """Top-level entries this stage did not write (a user's notes, another tool's files)."""
        if not self.path.is_dir():
            return []
        return sorted(e for e in self.path.iterdir()
                      if e.name not in self.entries and not _is_internal(e) and not _is_nested_output(e))

    def own(self, *names: str) -> None:
        """Record top-level entries before writing them; an existing entry someone else wrote is refused."""
        new = [n for n in names if n not in self.entries]
        for name in new:
            if Path(name).name != name or name in ("", ".", "..", RECORD):
                raise ValueError(f"not a top-level entry name: {name!r}")
            if os.path.lexists(self.path / name):
                raise UserError(f"{self.path / name} exists and was not written by {self.stage}; "
                                "move it away or name another output folder")
        if new:
            self.entries.update(new)
            self._save()

    def read_record(self, name: str) -> dict[str, Any] | None:
        """A JSON object this stage wrote in the folder (run.json, layer_sweep.json), or None when it is not
        ours, missing or unreadable: an earlier run's record only decides whether this run may reuse the folder."""
        path = self.path / name
        if name not in self.entries or not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def file(self, relative: str) -> Path:
        """The path of `relative` (e.g. "logreg/scores.csv"), its top-level entry recorded first."""
        self.own(Path(relative).parts[0])
        return self.path / relative

    def remove_stale_temps(self) -> int:
        """Temporaries of dead runs anywhere inside the recorded entries (e.g. `logreg/.model.joblib.tmp-*`)."""
        if not self.path.is_dir():
            return 0
        removed = remove_stale_temps(self.path)
        for name in self.entries:
            top = self.path / name
            if top.is_dir() and not top.is_symlink():
                for folder, _, _ in os.walk(top):
                    removed += remove_stale_temps(folder)
        return removed

    def clear(self, keep: Iterable[str] = ()) -> None:
        """Remove every recorded entry but `keep` (a redo with --overwrite); foreign entries stay."""
        kept = self.entries & set(keep)
        for name in sorted(self.entries - kept):
            with contextlib.suppress(FileNotFoundError):
                remove_path(self.path / name)
        self.entries = kept
        if self.path.is_dir():
            self._save()


def _read_record(out: Path, stage: str) -> set[str] | None:
    record = out / RECORD
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        entries, owner = data["entries"], data["stage"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{record} is damaged; name another output folder") from None
    if owner != stage:
        raise UserError(f"{out} holds the output of {owner}, not {stage}; name another output folder")
    return {str(e) for e in entries}


def _probe_writable(folder: Path, flag: str, out: Path) -> None:
    probe = temp_sibling(folder / "probe", "tmp")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write into {folder} ({flag} {out}): {exc.strerror or exc}") from None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def claim_output(out: str | os.PathLike, *, stage: str, inputs: Iterable[tuple[str, Any]] = (),
                 flag: str = "--out") -> OutputDir:
    """Take `out` as `stage`'s output folder, or refuse with one line before any work is done.

    Accepted: a new folder (created with the first entry the stage records, so a refused command
    leaves nothing behind), an empty one, or one whose record says `stage` wrote it (its foreign
    entries are kept and never touched). Refused: a file, a non-empty folder without a record, a
    folder of another stage, an unwritable folder, and a folder that equals, contains or sits inside
    one of `inputs`. Temporaries of dead runs are removed.
    """
    out = Path(out)
    check_apart(out, inputs, flag)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file, not a folder; name a folder")
    if not out.exists():
        parent = _nearest_existing(out.parent)
        if not parent.is_dir():
            raise UserError(f"cannot create {flag} {out}: {parent} is a file")
        _probe_writable(parent, flag, out)
        return OutputDir(out, stage, set())
    entries = _read_record(out, stage)
    remove_stale_temps(out)
    if entries is None:
        try:
            others = [e for e in sorted(out.iterdir()) if not _is_internal(e) and not _is_nested_output(e)]
        except OSError as exc:
            raise user_os_error(exc, f"list {flag}") from None
        if others:
            shown = ", ".join(e.name for e in others[:3]) + (", ..." if len(others) > 3 else "")
            raise UserError(f"{flag} {out} is not empty ({shown}) and was not written by {stage}; "
                            "name a new or empty folder")
        entries = set()
    owned = OutputDir(out, stage, entries)
    owned._save()  # also proves the folder is writable before any work starts
    return owned


def claim_output_file(out: str | os.PathLike, *, inputs: Iterable[tuple[str, Any]] = (),
                      suffixes: tuple[str, ...] = (), flag: str = "--out") -> Path:
    """Check an output *file* before any work: not a folder, the right suffix, apart from the inputs,
    and a parent folder that exists (created) and is writable."""
    out = Path(out)
    if out.is_dir():
        example = f" such as {out / ('NAME' + suffixes[0])}" if suffixes else ""
        raise UserError(f"{flag} {out} is a folder; name a file{example}")
    if suffixes and out.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {out} must end in {' or '.join(suffixes)}")
    check_apart(out, inputs, flag)
    parent = _nearest_existing(out.parent)
    if not parent.is_dir():
        raise UserError(f"cannot create {flag} {out}: {parent} is a file")
    _probe_writable(parent, flag, out)
    return out
