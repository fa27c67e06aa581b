"""Safe file-system work shared by every stage.

- Atomic writes: a file at a final path is always complete (write a temporary sibling, then rename).
- Owned outputs: a stage writes only into a folder it created or recorded as its own, locked for the run,
  replaces only the files it wrote (`core.ownership`), and never writes where an input lives (`claim_output`).
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
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.ownership import (JOURNAL, RECORD, Record, carry_foreign, files_below, is_internal, note, read_journal,
                                          read_record, remove_owned, write_record)
from clipforensics.core.paths import exchange, remove_path, remove_stale_temps, temp_sibling


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
            note([final])  # recorded as the owning stage's before it appears: a kill never leaves it unrecorded
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

    Readers see the old folder or the new one, never a mix. Its files are recorded as the owning stage's first,
    and what the old folder holds that its owner did not write (a user's notes) is linked into the new one, so
    it survives the replacement. The two are swapped in one step where the system can; elsewhere a kill between
    the two renames leaves the old folder under a `.old-PID` name.
    """
    note(final / relative for relative in files_below(tmp))
    if final.is_dir() and not final.is_symlink():
        carry_foreign(final, tmp)
    if os.path.lexists(final) and exchange(tmp, final):  # one step where the system can: tmp now holds the old
        with contextlib.suppress(OSError):
            remove_path(tmp)
        return
    old = temp_sibling(final, "old")
    if os.path.lexists(final):
        os.replace(final, old)
    os.replace(tmp, final)
    with contextlib.suppress(OSError):
        remove_path(old)


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
    return is_internal(entry.name)


def _is_nested_output(entry: Path) -> bool:
    """A sub-folder with its own record is another stage's output (e.g. a report's matrix/): left alone."""
    return entry.is_dir() and not entry.is_symlink() and (entry / RECORD).is_file()


_HELD: "weakref.WeakValueDictionary[tuple[int, int], FolderLock]" = weakref.WeakValueDictionary()


class FolderLock:
    """An exclusive `flock` on an output folder itself (no lock file to leave behind), held while any `OutputDir`
    of this process refers to it: a second claim in this process shares it, another process is refused. On
    release the files journaled while it was held are folded into the record."""

    def __init__(self, fd: int | None, folder: Path | None = None) -> None:
        self.fd = fd
        if fd is not None:
            weakref.finalize(self, _release, fd, folder, os.getpid())


def _release(fd: int, folder: Path | None, pid: int) -> None:
    try:
        if folder is not None and pid == os.getpid() and (folder / JOURNAL).exists():
            record = read_record(folder)
            if record is not None:
                write_record(folder, record)
    except (UserError, OSError):
        pass  # the journal stays: the next run folds it in
    finally:
        os.close(fd)


def lock_folder(folder: Path, what: str) -> FolderLock:
    """Lock `folder` for this process, or one line saying another process is writing it. Where the file system
    cannot lock a folder, the run goes on unlocked, as it did before locks."""
    while True:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise user_os_error(exc, "open the output folder") from None
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        if key in _HELD:
            os.close(fd)
            return _HELD[key]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"another process is writing {what} (the folder is locked); wait for it to "
                                "finish or name another output folder") from None
            return FolderLock(None)
        with contextlib.suppress(FileNotFoundError):  # a folder replaced between our open and our lock: again
            if (os.stat(folder).st_dev, os.stat(folder).st_ino) == key:
                _HELD[key] = lock = FolderLock(fd, Path(os.path.abspath(folder)))
                return lock
        os.close(fd)


@dataclass
class OutputDir:
    """A folder one stage owns: the entries (and files inside them) it wrote are in its record; nothing else is
    touched. One from `claim_output` holds the folder's lock for as long as it lives."""

    path: Path
    stage: str
    entries: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    locking: bool = field(default=False, repr=False, compare=False)
    lock: FolderLock | None = field(default=None, repr=False, compare=False)

    @classmethod
    def record_built(cls, folder: Path, stage: str) -> "OutputDir":
        """Record every entry and file of a folder this process built privately (a temporary sibling about to be
        installed with `install_dir`): nobody else can have written into it."""
        entries = {p.name for p in folder.iterdir() if not _is_internal(p)}
        files = {f for f in files_below(folder) if "/" in f and f.split("/")[0] in entries}
        owned = cls(folder, stage, entries, files)
        owned._save()
        return owned

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    def _save(self) -> None:
        """The record, rewritten under the folder's lock (taken here when the folder is created by this run)."""
        try:
            existed = self.path.is_dir()
            self.path.mkdir(parents=True, exist_ok=True)
            if self.locking and self.lock is None:
                self.lock = lock_folder(self.path, str(self.path))
                if existed and self.record_path.exists():
                    raise UserError(f"{self.path} was written by another run while this one started; rerun")
            self.files |= read_journal(self.path)
            write_record(self.path, Record(self.stage, self.entries, self.files))
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
        new = self.refuse_taken(*names)
        if new or (self.locking and self.lock is None):
            self.entries.update(new)
            self._save()

    def refuse_taken(self, *names: str) -> list[str]:
        """The `names` not yet recorded; refused when one exists that someone else wrote (checked, not recorded:
        for a stage that builds its files elsewhere and installs them in one step)."""
        new = [n for n in names if n not in self.entries]
        for name in new:
            if Path(name).name != name or name in ("", ".", "..") or _is_internal(Path(name)):
                raise ValueError(f"not a top-level entry name: {name!r}")
            if os.path.lexists(self.path / name):
                raise UserError(f"{self.path / name} exists and was not written by {self.stage}; "
                                "move it away or name another output folder")
        return new

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
        """Remove what the stage wrote except the entries `keep` (a redo with --overwrite): recorded files at every
        depth, then folders left empty; foreign files stay, and so does a recorded folder that still holds some."""
        if not self.path.is_dir():
            self.entries &= set(keep)
            return
        kept = self.entries & set(keep)
        record = Record(self.stage, self.entries, self.files | read_journal(self.path))
        remove_owned(self.path, record, sorted(self.entries - kept))
        self.entries = kept | {n for n in self.entries - kept if os.path.lexists(self.path / n)}
        self.files = {f for f in record.files if f.split("/")[0] in kept}
        self._save()


@contextlib.contextmanager
def staged_install(owned: OutputDir) -> Iterator[Path]:
    """A private folder to build `owned`'s new contents in, installed over it in one step when the block succeeds:
    what the stage wrote before goes, foreign files and nested outputs stay (their writers locked out meanwhile)."""
    tmp = temp_sibling(owned.path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        OutputDir.record_built(tmp, owned.stage)
        nested = [lock_folder(e, str(e)) for e in owned.path.iterdir() if _is_nested_output(e)]
        install_dir(tmp, owned.path)
        del nested
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_record(out: Path, stage: str) -> Record | None:
    record = read_record(out)
    if record is not None and record.stage != stage:
        raise UserError(f"{out} holds the output of {record.stage}, not {stage}; name another output folder")
    return record


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
    """Take `out` as `stage`'s output folder, locked for this process, or refuse with one line before any work.

    Accepted: a new folder (created and locked with the first entry the stage records, so a refused command
    leaves nothing behind), an empty one, or one whose record says `stage` wrote it (its foreign
    entries are kept and never touched). Refused: a file, a non-empty folder without a record, a
    folder of another stage, a damaged record, a folder another process is writing, an unwritable folder, and a
    folder that equals, contains or sits inside one of `inputs`. Temporaries of dead runs are removed.
    """
    out = Path(out)
    check_apart(out, inputs, flag)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file, not a folder; name a folder")
    leader = os.environ.get("RANK", "0") == "0"  # torchrun's other ranks run under rank 0's lock: it alone writes
    if not out.exists():
        parent = _nearest_existing(out.parent)
        if not parent.is_dir():
            raise UserError(f"cannot create {flag} {out}: {parent} is a file")
        _probe_writable(parent, flag, out)
        return OutputDir(out, stage, set(), locking=leader)
    lock = lock_folder(out, f"{flag} {out}") if leader else None
    record = _read_record(out, stage)
    remove_stale_temps(out)
    if record is None:
        try:
            others = [e for e in sorted(out.iterdir()) if not _is_internal(e) and not _is_nested_output(e)]
        except OSError as exc:
            raise user_os_error(exc, f"list {flag}") from None
        if others:
            shown = ", ".join(e.name for e in others[:3]) + (", ..." if len(others) > 3 else "")
            raise UserError(f"{flag} {out} is not empty ({shown}) and was not written by {stage}; "
                            "name a new or empty folder")
        record = Record(stage)
    owned = OutputDir(out, stage, record.entries, record.files, locking=leader, lock=lock)
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
