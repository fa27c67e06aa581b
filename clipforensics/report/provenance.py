"""What produced a report: model and weights fingerprint, caches and their preprocessing, protocol and
split counts, code version, date. It opens report.html and sits in metrics.json, so a page seen alone
still says which model, which frames and which code its numbers come from."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.data.cache import read_attrs
from clipforensics.data.provenance import TunedTower, tuned_tower
from clipforensics.report.tables import Row, Table, one_line

CACHE_KEYS = ("model", "pretrained", "weights_fingerprint", "image_size", "mean", "std", "precision", "crops",
              "data_root", "n_images", "manifest_hash", "created")
STUDY_KEYS = ("layers", "perturbations", "perturb_seed", "adapter_sha", "lora_run")
"""Shown only where the cache has them: block tokens, perturbed copies and their seed, the LoRA run it came from."""
PROTOCOL_KEYS = ("train_fakes", "test_fakes", "real_split", "split_seed", "split_file", "frames_per_video")
"""The protocol as scores tables record it (`split_seed`, `split_file`: how the videos were split)."""
PACKAGES = {"torch": "torch", "open_clip": "open_clip_torch", "peft": "peft", "scikit-learn": "scikit-learn",
            "numpy": "numpy"}
"""Shown name -> distribution name of the packages whose versions change the numbers (read from metadata, so
the report never imports torch)."""


def code_version() -> str:
    """`git describe --always --dirty` of the checkout this package runs from, else the package version."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return __version__
    text = done.stdout.strip()
    return f"{__version__} (git {text})" if done.returncode == 0 and text else __version__


def package_versions() -> dict[str, str]:
    """Installed version of each package in PACKAGES ('not installed' where absent)."""
    found = {}
    for shown, dist in PACKAGES.items():
        try:
            found[shown] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[shown] = "not installed"
    return found


def cache_record(path: str) -> dict[str, Any]:
    """The attributes of one cache that say what its embeddings are (a missing cache is named as such), and for a
    LoRA cache what its tower was tuned on (`tuned_on`: the reading and the tables never call that unseen)."""
    try:
        attrs = read_attrs(path)
    except UserError as exc:
        return {"path": path, "missing": str(exc)}
    tower = tuned_tower(path, attrs)
    return {"path": path, **{k: attrs.get(k) for k in CACHE_KEYS if k in attrs},
            **{k: attrs[k] for k in STUDY_KEYS if attrs.get(k) not in (None, [], "")},
            **({"tuned_on": tower.record()} if tower else {})}


def split_counts(tables: Iterable[pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Videos and frames per split of the first scores table (runs in one report share their test set)."""
    for table in tables:
        return {str(split): {"videos": int(g["video"].nunique()), "frames": int(len(g))}
                for split, g in table.groupby("split", sort=False)}
    return {}


def provenance(caches: Iterable[str], protocol: dict[str, Any] | None, tables: Iterable[pd.DataFrame],
               settings: Any = None) -> dict[str, Any]:
    return {"caches": [cache_record(str(p)) for p in dict.fromkeys(caches)],
            "protocol": {k: protocol.get(k) for k in PROTOCOL_KEYS if k in protocol} if protocol else None,
            "splits": split_counts(tables), "code_version": code_version(), "packages": package_versions(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def provenance_table(prov: dict[str, Any]) -> Table:
    rows = []
    for cache in prov["caches"]:
        rows.append(Row(("cache", one_line(cache["path"]))))
        for key, value in cache.items():
            if key == "tuned_on":
                rows.append(Row(("backbone", one_line(TunedTower.from_record(value).describe())), sub=True))
            elif key != "path" and value is not None:
                rows.append(Row((key, one_line(_text(value))), sub=True))
    if prov.get("protocol"):
        rows.append(Row(("protocol", one_line(_text(prov["protocol"])))))
    for split, n in prov.get("splits", {}).items():
        rows.append(Row((f"{split} split", f"{n['videos']} videos, {n['frames']} frames")))
    rows.append(Row(("code version", prov["code_version"])))
    if prov.get("packages"):
        rows.append(Row(("packages", ", ".join(f"{k} {v}" for k, v in prov["packages"].items()))))
    rows.append(Row(("date", prov["date"])))
    return Table(columns=("provenance", ""), right=(False, False), rows=tuple(rows))


def provenance_line(prov: dict[str, Any]) -> str:
    """One sentence for the top of the page: which model and weights, which split, which code (details below)."""
    parts = []
    for cache in prov.get("caches") or ():
        if "missing" not in cache:
            parts.append(f"model {cache.get('model')} ({cache.get('pretrained')}, weights "
                         f"{cache.get('weights_fingerprint')})")
    protocol = prov.get("protocol") or {}
    if protocol:
        split = protocol.get("split_file") or f"seed {protocol.get('split_seed', '?')}"
        parts.append(f"trained on {', '.join(protocol.get('train_fakes') or ()) or '?'}, split {split}, reals "
                     f"{protocol.get('real_split', '?')}")
    parts.append(f"code {prov.get('code_version')}, {prov.get('date')}")
    return one_line("; ".join(dict.fromkeys(parts)) + ".")
