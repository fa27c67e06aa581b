"""The one registry of run kinds, and the two ways to open run folders: one run (detect.py) or every run a
folder holds (the studies, which take a fit_heads run folder of several heads as well as one head or tower).

A folder is the first registered kind whose marker (record file) it holds; a kind is registered once, here.
"""

from __future__ import annotations

from pathlib import Path

from clipforensics.core.errors import UserError
from clipforensics.core.io import read_json_object
from clipforensics.core.registry import Registry
from clipforensics.heads.saved import MODEL_FILE, RECORD_FILE, REFIT
from clipforensics.runs.base import Run, RunKind, missing_files
from clipforensics.data.scores import SCORES
from clipforensics.lora.files import HEAD_FILE, RUN_FILE
from clipforensics.runs.head import HeadKind
from clipforensics.runs.tuned import TowerKind

RUN_KINDS: Registry[RunKind] = Registry("run kind")
RUN_KINDS.register("head", HeadKind(
    "fitted head", RECORD_FILE, (RECORD_FILE, MODEL_FILE, SCORES), "cache", REFIT,
    "re-extract it with extract_features.py --perturb (e.g. --perturb jpeg:90,50 blur:1,2) and refit",
    nested=True, base_title="cache"))
RUN_KINDS.register("lora", TowerKind(
    "LoRA run", RUN_FILE, (RUN_FILE, HEAD_FILE, SCORES), "adapter_sha", "rerun finetune_lora.py with the same settings",
    "train the LoRA run on a base cache extracted with --perturb (its re-extracted cache keeps the same copies)",
    nested=False, base_title="base cache"))


def _kind_of(folder: Path) -> str | None:
    return next((name for name in RUN_KINDS if (folder / RUN_KINDS.get(name).marker).is_file()), None)


def _read(folder: Path, name: str, complete: bool) -> Run:
    """The run's record, read and validated; `complete`: every file of the kind must be there first."""
    kind = RUN_KINDS.get(name)
    if complete:
        missing_files(folder, kind)
    record = read_json_object(folder / kind.marker, kind.fix)
    if not record.get(kind.required):
        raise UserError(f"{folder / kind.marker} is not a run record (no {kind.required!r}); {kind.fix}")
    return Run(folder, name, kind, record)


def _nested(folder: Path) -> list[tuple[Path, str]]:
    """The runs side by side in a folder (a fit_heads run's heads), by folder name."""
    found = ((sub, _kind_of(sub)) for sub in sorted(folder.iterdir()) if sub.is_dir())
    return [(sub, name) for sub, name in found if name is not None and RUN_KINDS.get(name).nested]


def _folder(folder: Path) -> None:
    if not folder.is_dir():
        raise UserError(f"run folder {folder} {'is not a directory' if folder.exists() else 'does not exist'}")


def _not_a_run(folder: Path) -> UserError:
    kinds = " nor a ".join(f"{kind.title} folder ({kind.marker})" for _, kind in RUN_KINDS.items())
    return UserError(f"{folder} is not a {kinds}")


def open_run(folder: Path) -> Run:
    """The one run a folder is; a folder of several runs is refused by name, so the user picks one."""
    _folder(folder)
    name = _kind_of(folder)
    if name is not None:
        return _read(folder, name, complete=False)
    nested = _nested(folder)
    if nested:
        titles = sorted({RUN_KINDS.get(name).title for _, name in nested})
        raise UserError(f"{folder} holds {' and '.join(t + 's' for t in titles)} "
                        f"({', '.join(sub.name for sub, _ in nested)}): pass one of them, e.g. --run {nested[0][0]}")
    raise _not_a_run(folder)


def runs_in(folder: Path) -> list[Run]:
    """Every run a folder is or holds, each complete (all its files there) with its record validated."""
    _folder(folder)
    name = _kind_of(folder)
    nested = [(folder, name)] if name is not None else _nested(folder)
    if not nested:
        raise _not_a_run(folder)
    return [_read(sub, kind, complete=True) for sub, kind in nested]
