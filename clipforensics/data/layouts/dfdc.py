"""DFDC and DFDC-preview: dfdc_train_part_N/ each with metadata.json, or dataset.json at the root.

DFDC's metadata.json: {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}}; a fake's
target is its original. DFDC-preview's dataset.json: {"method_A/.../abc.mp4": {"label": "fake", "set":
"test"}} with folders method_A/, method_B/, original_videos/. `split` / `set` is the official split.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (CLASS_WORD, FAKE, LAYOUTS, OFFICIAL_SPLITS, REAL, Found,
                                             listing_with_splits, present, read_json, stem)
from clipforensics.data.layouts.listed import listed_layout
from clipforensics.data.manifest import OFFICIAL_SPLIT

DFDC_METADATA = "metadata.json"  # per part folder: {"abc.mp4": {"label": "FAKE", "split": "train", "original": "x.mp4"}}
DFDC_PREVIEW = "dataset.json"    # at the root: {"method_A/.../abc.mp4": {"label": "fake", "set": "test"}, ...}
DFDC_LABELS = {"real": REAL, "fake": FAKE}


def _metadata_files(root: Path) -> list[str]:
    """metadata.json at the root and in each part folder, relative to the root."""
    files = present(root, DFDC_METADATA)
    with os.scandir(root) as entries:
        parts = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    return files + [f"{part}/{DFDC_METADATA}" for part in parts if (root / part / DFDC_METADATA).is_file()]


def _dfdc_entry(source: Path, key: str, value: object) -> tuple[int, str]:
    """(label, official split) of one metadata record; anything unreadable is an error naming it."""
    if not isinstance(value, dict) or str(value.get("label", "")).lower() not in DFDC_LABELS:
        raise UserError(f"{source}: entry {key!r} has no label REAL or FAKE")
    split = str(value.get("split", value.get("set", "")) or "").lower()
    if split and split not in OFFICIAL_SPLITS:
        raise UserError(f"{source}: entry {key!r} has split {split!r}; expected one of {', '.join(OFFICIAL_SPLITS)}")
    return DFDC_LABELS[str(value["label"]).lower()], split


def _records(path: Path) -> dict:
    """A label file's JSON object of video -> record; anything else is refused."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object of video {'path' if path.name == DFDC_PREVIEW else 'name'} "
                        "-> record")
    return data


def _part_rows(root: Path, rel: str) -> list[dict]:
    """The videos one part's metadata.json labels, by path from the root."""
    rows = []
    part = posixpath.dirname(rel)
    for key, value in _records(root / rel).items():
        label, split = _dfdc_entry(root / rel, key, value)
        original = value.get("original") or ""
        name = stem(key)
        rows.append({"listed": f"{part}/{key}" if part else key, "label": label,
                     "manipulation": "DFDC-" + CLASS_WORD[label], "name": name,
                     "target": stem(original) if label == FAKE and original else name, "source": "",
                     OFFICIAL_SPLIT: split})
    return rows


def _preview_rows(root: Path) -> list[dict]:
    """The videos DFDC-preview's dataset.json labels; the top folder (method_A, ...) is the class."""
    rows = []
    for key, value in _records(root / DFDC_PREVIEW).items():
        label, split = _dfdc_entry(root / DFDC_PREVIEW, key, value)
        rel = key.replace("\\", "/")
        rows.append({"listed": rel, "label": label, "manipulation": rel.split("/", 1)[0], "name": stem(rel),
                     "target": stem(rel) if label == REAL else "", "source": "", OFFICIAL_SPLIT: split})
    return rows


def dfdc_videos(root: Path, found: Found, labels: Path | None) -> pd.DataFrame:
    """The videos every metadata.json and dataset.json label; at least one file is needed."""
    rows = [row for rel in _metadata_files(root) for row in _part_rows(root, rel)]
    if (root / DFDC_PREVIEW).is_file():
        rows += _preview_rows(root)
    if not rows:
        raise UserError(f"no {DFDC_METADATA} (in {root} or its part folders) and no {DFDC_PREVIEW} in {root}")
    return listing_with_splits(rows)


LAYOUTS.register("dfdc", listed_layout(
    "dfdc", priority=30,
    detect=lambda root: (root / DFDC_PREVIEW).is_file() or bool(_metadata_files(root)),
    videos=dfdc_videos, label_files=lambda root: _metadata_files(root) + present(root, DFDC_PREVIEW)))
