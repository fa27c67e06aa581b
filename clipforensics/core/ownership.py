"""What an output folder's record says the stage wrote, file by file, and the rules that keep it honest.

The record (`.clipforensics-output.json`) lists the folder's top-level entries and, inside those that are
folders, every file the stage wrote. A file is recorded *before* it appears (`atomic_path` and `install_dir`
append it to the folder's journal, a line per file, cheap and safe to append from worker processes), so a
kill never leaves a written file unrecorded. Clearing removes recorded files only (and folders left empty
by that): a user's notes inside a stage's sub-folder stay. A record is never trusted as written: every
entry must be a plain relative name inside the folder, or the record is refused as damaged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from clipforensics.core.errors import UserError
from clipforensics.core.paths import TEMP, remove_path, temp_sibling

RECORD = ".clipforensics-output.json"
"""The record an output folder carries of its own entries (top-level names, and the files inside them)."""
JOURNAL = ".clipforensics-output.journal"
"""Files recorded since the record was last rewritten: one JSON string (a relative path) per line."""
RECORD_VERSION = 1


def is_internal(name: str) -> bool:
    """Entries a folder may hold besides its outputs: its record, journal, locks and temporaries of live runs."""
    return name in (RECORD, JOURNAL) or (name.startswith(".") and name.endswith(".lock")) or bool(TEMP.match(name))


def plain_parts(relative: object) -> tuple[str, ...] | None:
    """The parts of a recorded path when it is a plain relative path inside the folder ('logreg/scores.csv'),
    else None: '..', '.', absolute paths, empty parts, NUL bytes and the folder's own bookkeeping are not."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or relative.startswith("/"):
        return None
    parts = tuple(relative.split("/"))
    if any(part in ("", ".", "..") for part in parts) or is_internal(parts[0]):
        return None
    return parts


@dataclass
class Record:
    """A folder's owner and what it wrote: top-level `entries`, and `files` (relative paths) inside them."""

    stage: str
    entries: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)

    def owns(self, relative: str) -> bool:
        """Whether the stage wrote `relative`: a recorded entry or file, or a file inside a recorded folder with
        no file recorded in it (a record from before files were recorded: that folder is wholly the stage's)."""
        top = relative.split("/")[0]
        return relative in self.files or top in self.entries and (top == relative or top in self.wholly())

    def wholly(self) -> set[str]:
        """Recorded entries with no file recorded inside: owned as a whole."""
        return self.entries - {f.split("/")[0] for f in self.files}


def _damaged(path: Path, why: str) -> UserError:
    return UserError(f"{path} is damaged ({why}); name another output folder")


def _checked(path: Path, values: object, top: bool) -> set[str]:
    if not isinstance(values, list):
        raise _damaged(path, "its entries are not a list")
    for value in values:
        parts = plain_parts(value)
        if parts is None or (top and len(parts) != 1):
            raise _damaged(path, f"entry {value!r} is not a plain name inside the folder")
    return set(values)


def read_record(folder: Path) -> Record | None:
    """The folder's record with its journal folded in; None where there is none; a damaged one refused."""
    path = folder / RECORD
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stage = data["stage"]
        entries = data["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        raise _damaged(path, "not a readable record") from None
    if not isinstance(stage, str):
        raise _damaged(path, "its stage is not a name")
    record = Record(stage, _checked(path, entries, top=True), _checked(path, data.get("files", []), top=False))
    record.files |= read_journal(folder)
    return record


def read_journal(folder: Path) -> set[str]:
    """Files appended to the journal; a last line cut short by a kill is not yet a record."""
    path = folder / JOURNAL
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    except (OSError, UnicodeDecodeError):
        raise _damaged(path, "not readable") from None
    complete = text.split("\n")[:-1]
    try:
        values = [json.loads(line) for line in complete if line]
    except ValueError:
        raise _damaged(path, "a line is not JSON") from None
    return _checked(path, values, top=False)


def write_record(folder: Path, record: Record) -> None:
    """The record, rewritten in one rename, with the journal folded in (and then removed)."""
    body = {"stage": record.stage, "entries": sorted(record.entries), "version": RECORD_VERSION}
    files = sorted(f for f in record.files if f.split("/")[0] in record.entries)
    if files:
        body["files"] = files
    tmp = temp_sibling(folder / RECORD)
    try:
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, folder / RECORD)
    finally:
        tmp.unlink(missing_ok=True)
    (folder / JOURNAL).unlink(missing_ok=True)


def _owner(path: Path) -> tuple[Path, tuple[str, ...]] | None:
    """The nearest folder above `path` that carries a record, and `path` relative to it; None where none does,
    or where the path runs through a temporary (a staged folder records itself when it is installed)."""
    path = Path(os.path.abspath(path))
    for folder in path.parents:
        if (folder / RECORD).is_file():
            parts = path.relative_to(folder).parts
            if len(parts) < 2 or any(is_internal(part) for part in parts):
                return None
            return folder, parts
    return None


def note(paths: Iterable[Path]) -> None:
    """Append `paths` (files about to appear) to the journal of the output folder above each, before they do."""
    lines: dict[Path, list[str]] = {}
    for path in paths:
        owner = _owner(path)
        if owner is not None:
            lines.setdefault(owner[0], []).append(json.dumps("/".join(owner[1])))
    for folder, found in lines.items():
        fd = os.open(folder / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, ("\n".join(found) + "\n").encode("utf-8"))
        finally:
            os.close(fd)


def files_below(folder: Path) -> list[str]:
    """Every file and link below `folder` (links never followed), as relative paths."""
    found = []
    for top, dirs, files in os.walk(folder):
        base = Path(top).relative_to(folder)
        links = [d for d in dirs if (Path(top) / d).is_symlink()]
        found += [(base / name).as_posix() for name in [*files, *links]]
    return found


def remove_owned(folder: Path, record: Record, names: Iterable[str]) -> None:
    """Remove what `record` says the stage wrote under the top-level `names`: recorded files, then the folders
    that left empty; a path through a link is never followed, and unrecorded files stay where they are."""
    wholly = record.wholly()
    for name in names:
        top = folder / name
        if top.is_symlink() or top.is_file() or name in wholly:
            with contextlib.suppress(FileNotFoundError):
                remove_path(top)
            continue
        emptied: set[Path] = set()
        for relative in sorted(f for f in record.files if f.split("/")[0] == name):
            target = folder / relative
            if _real_folders(folder, target) and (target.is_file() or target.is_symlink()):
                target.unlink()
                emptied.update(p for p in target.parents if p != folder and folder in p.parents)
        for path in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()


def _real_folders(folder: Path, target: Path) -> bool:
    """Whether every folder between `folder` and `target` is a real folder (no link leads out of the output)."""
    return all(p.is_dir() and not p.is_symlink() for p in target.parents if folder in p.parents)


def owned_below(final: Path) -> Callable[[str], bool] | None:
    """Whether the stage that owns `final` (its own record, or the nearest one above) wrote a path inside it;
    None where no record covers it or nothing inside it is recorded file by file (then it is wholly the stage's)."""
    if (final / RECORD).is_file():
        record = read_record(final)
        return lambda relative: record.owns(relative) or relative in (RECORD, JOURNAL)
    owner = _owner(final / "x")
    record = read_record(owner[0]) if owner else None
    if record is None:
        return None
    prefix = "/".join(owner[1][:-1]) + "/"
    inside = {f[len(prefix):] for f in record.files if f.startswith(prefix)}
    return inside.__contains__ if inside else None


def carry_foreign(old: Path, new: Path) -> None:
    """Give the staged folder `new` every file of `old` its owner did not write (a user's notes, another stage's
    nested output), as hard links (copies where links fail), so installing `new` in one rename loses none; a
    name the new run wrote too keeps the new file."""
    owned = owned_below(old)
    if owned is None or not old.is_dir():
        return
    for relative in files_below(old):
        if owned(relative) or ("/" not in relative and is_internal(relative)):
            continue
        source, target = old / relative, new / relative
        if os.path.lexists(target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
