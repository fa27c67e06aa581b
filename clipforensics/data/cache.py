"""The feature cache: one HDF5 file per extraction run, self-describing and checked on read.

Schema (N images that decoded, D embedding dims):
    /image_embeddings          N x D float16   projected image embedding, before L2 normalisation
    /path /label /manipulation /video /target /source   N   manifest columns (utf-8 strings, label int8)
    /failed/path /failed/reason                          images that could not be read, and why
    /prompts/<set>/text /embedding /label                prompts, their float32 embeddings, class 0/1
    /layers/<k>                N x W float16   class token after residual block k (--layers; W = tower width)
    /perturbed/<kind:level>/image_embeddings   N x D float16   the same rows perturbed (--perturb)
    attributes: model, pretrained, weights_fingerprint, init_seed, image_size, mean, std,
                precision, manifest_hash, crops, data_root, package_version, created, ...
Every dataset carries a `crc32` attribute of its values (schema 2): flipped bytes are found on read.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core import identity
from clipforensics.core.io import atomic_path
from clipforensics.core.errors import UserError
from clipforensics.data.manifest import COLUMNS, OFFICIAL_SPLIT

SCHEMA_VERSION = 2
CHECKSUM = "crc32"
STRING_COLUMNS = tuple(c for c in COLUMNS if c != "label")
OPTIONAL_COLUMNS = (OFFICIAL_SPLIT,)  # written when the manifest has them (a data set's official split)
# Attributes that decide what the embeddings mean: two caches (or a cache and a request) that
# differ in any of these must never be mixed. `crops` is the data root's prepare.json recipe
# (data/crops.py; None for frames prepared elsewhere): the same paths can hold other crops. The model's
# share is what rebuilding the model must reproduce.
MODEL_IDENTITY_KEYS = ("model", "pretrained", "weights_fingerprint", "init_seed", "image_size")
IDENTITY_KEYS = MODEL_IDENTITY_KEYS + ("precision", "manifest_hash", "crops")
_STR = h5py.string_dtype("utf-8")


@dataclass
class PromptEmbeddings:
    texts: list[str]
    embeddings: np.ndarray
    labels: np.ndarray


@dataclass
class FeatureCache:
    """A cache read into memory (100k x 512 float16 is ~100 MB)."""

    path: Path
    attrs: dict[str, Any]
    manifest: pd.DataFrame
    embeddings: np.ndarray
    prompts: dict[str, PromptEmbeddings] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    perturbed: dict[str, np.ndarray] = field(default_factory=dict)
    file_stats: np.ndarray | None = None  # N x 2: size, mtime_ns of each frame when extracted (data.fingerprint)

    def identity(self) -> dict[str, Any]:
        return {k: self.attrs.get(k) for k in IDENTITY_KEYS}


def _encode_attr(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) or value is None else value


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and value[:1] in "[{n":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _crc(values: np.ndarray) -> int:
    """CRC-32 of a dataset's values (strings joined by NUL), independent of how HDF5 lays them out."""
    if values.dtype.kind in "OUS":
        data = "\0".join(v.decode() if isinstance(v, bytes) else str(v) for v in values.ravel()).encode()
    else:
        data = np.ascontiguousarray(values)  # zlib reads the array's own buffer: no copy of a 400 MB layer stack
    return zlib.crc32(data)


def _dataset(h5: h5py.File | h5py.Group, name: str, values: np.ndarray, **kwargs: Any) -> None:
    """A dataset with its checksum: numbers are stored exactly as given, so the checksum is taken from the array
    itself (reading hundreds of MB of block tokens back cost a third of the write); strings as HDF5 returns them."""
    ds = h5.create_dataset(name, data=values, **kwargs)
    ds.attrs[CHECKSUM] = _crc(ds[()] if values.dtype.kind in "OUS" else values)


def _compose(embeddings: np.ndarray, manifest: pd.DataFrame, attrs: Mapping[str, Any],
             prompts: Mapping[str, PromptEmbeddings], failed: pd.DataFrame, extras: Mapping[str, np.ndarray],
             file_stats: np.ndarray | None) -> io.BytesIO:
    """The whole HDF5 file, built in memory (it costs the file's size in memory once more).

    HDF5 must never meet a full disk: h5py 3.16 raises in the middle of a write and then crashes the
    interpreter (segfault) while closing the file, so the bytes are written by plain file I/O instead.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        rows = max(1, min(1024, len(embeddings)))
        _dataset(h5, "image_embeddings", embeddings.astype(np.float16, copy=False), chunks=(rows, embeddings.shape[1]))
        for name, values in extras.items():
            _dataset(h5, name, values.astype(np.float16, copy=False), chunks=(rows, values.shape[1]))
        for col in STRING_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in manifest.columns):
            _dataset(h5, col, manifest[col].astype(str).to_numpy(dtype=object), dtype=_STR)
        _dataset(h5, "label", manifest["label"].to_numpy(dtype=np.int8))
        if file_stats is not None:
            _dataset(h5, "file_stats", np.asarray(file_stats, dtype=np.int64).reshape(len(embeddings), 2))
        grp = h5.create_group("failed")
        for col in ("path", "reason"):
            _dataset(grp, col, failed[col].astype(str).to_numpy(dtype=object), dtype=_STR)
        for name, p in prompts.items():
            g = h5.create_group(f"prompts/{name}")
            _dataset(g, "text", np.array(p.texts, dtype=object), dtype=_STR)
            _dataset(g, "embedding", p.embeddings.astype(np.float32))
            _dataset(g, "label", np.asarray(p.labels, dtype=np.int8))
        full = {**attrs, "schema_version": SCHEMA_VERSION, "package_version": __version__,
                "n_images": len(embeddings), "n_failed": len(failed)}
        for key, value in full.items():
            h5.attrs[key] = _encode_attr(value)
    return buffer


def write_cache(path: str | Path, *, embeddings: np.ndarray, manifest: pd.DataFrame, attrs: Mapping[str, Any],
                prompts: Mapping[str, PromptEmbeddings], failed: pd.DataFrame,
                extras: Mapping[str, np.ndarray] | None = None, file_stats: np.ndarray | None = None) -> Path:
    """Write a complete cache atomically: the final path appears only once everything is on disk.

    `extras` are further N-row float16 arrays by path (layers/<k>, perturbed/<kind:level>/image_embeddings);
    `file_stats` the size and mtime of each frame (data.fingerprint)."""
    path = Path(path)
    extras = dict(extras or {})
    if len(embeddings) != len(manifest) or any(len(v) != len(manifest) for v in extras.values()):
        raise ValueError("one embedding per manifest row expected")
    buffer = _compose(embeddings, manifest, attrs, prompts, failed, extras, file_stats)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
    return path


def _values(ds: h5py.Dataset) -> np.ndarray:
    """A dataset's values, checked against its stored checksum (caches of schema 1 have none)."""
    values = ds[()]
    stored = ds.attrs.get(CHECKSUM)
    if stored is not None and int(stored) != _crc(values):
        raise UserError(f"{ds.file.filename}: dataset {ds.name} does not match its checksum (the file is "
                        "damaged); re-extract it")
    return values


def _strings(ds: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in _values(ds)]


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Only the attributes (cheap): used to check a cache before loading it."""
    with _open(path) as h5:
        return {k: _decode_attr(v) for k, v in h5.attrs.items()}


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cache {path} is a folder, not a cache file" if path.is_dir() else f"cache not found: {path}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path} is not a readable HDF5 cache (corrupted or incomplete?): {exc}") from None
    if "image_embeddings" not in h5 or "schema_version" not in h5.attrs:
        h5.close()
        raise UserError(f"{path} is not a clipforensics feature cache (no /image_embeddings)")
    return h5


def read_cache(path: str | Path, expect: Mapping[str, Any] | None = None, *, layers: bool = False,
               perturbed: bool = False) -> FeatureCache:
    """Load a cache; if `expect` is given, any identity attribute that differs is an error.

    Stored block tokens (`layers`) and perturbed copies (`perturbed`) are read only when asked: they
    can be many times the size of the embeddings."""
    path = Path(path)
    try:
        with _open(path) as h5:
            attrs = {k: _decode_attr(v) for k, v in h5.attrs.items()}
            if expect:
                check_identity(attrs, expect, what=str(path))
            columns = {col: _strings(h5[col]) for col in STRING_COLUMNS}
            optional = [col for col in OPTIONAL_COLUMNS if col in h5]
            extra = {col: _strings(h5[col]) for col in optional}
            labels = _values(h5["label"])
            embeddings = _values(h5["image_embeddings"])
            failed = pd.DataFrame({c: _strings(h5["failed"][c]) for c in ("path", "reason")})
            file_stats = _values(h5["file_stats"]) if "file_stats" in h5 else None
            prompts = {
                name: PromptEmbeddings(_strings(g["text"]), _values(g["embedding"]),
                                       _values(g["label"]).astype(np.int64))
                for name, g in h5.get("prompts", {}).items()
            }
            stored_layers = {int(k): _values(ds) for k, ds in h5.get("layers", {}).items()} if layers else {}
            copies = ({name: _values(g["image_embeddings"]) for name, g in h5.get("perturbed", {}).items()}
                      if perturbed else {})
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path} is damaged: {str(exc).splitlines()[0]}") from None
    _validate(path, {**columns, **extra}, labels, embeddings, prompts)
    stored = [*((f"layers/{k}", v) for k, v in stored_layers.items()),
              *((f"perturbed/{k}", v) for k, v in copies.items())]
    bad = [f"/{name} has shape {values.shape}" for name, values in stored
           if values.ndim != 2 or len(values) != len(labels)]
    if file_stats is not None and file_stats.shape != (len(labels), 2):
        bad.append(f"/file_stats has shape {file_stats.shape}")
    if bad:
        raise UserError(f"{path} is damaged: {'; '.join(bad[:3])} for {len(labels)} rows; re-extract it")
    manifest = pd.DataFrame(columns)
    manifest.insert(1, "label", labels.astype(np.int64))
    for col in optional:
        manifest[col] = extra[col]
    return FeatureCache(path, attrs, manifest[list(COLUMNS) + optional], embeddings, prompts, failed, stored_layers,
                        copies, file_stats)


def read_file_stats(path: str | Path) -> tuple[list[str], np.ndarray] | None:
    """The frame paths and their size / mtime when extracted, without loading the embeddings
    (None for a cache written before they were stored)."""
    try:
        with _open(path) as h5:
            if "file_stats" not in h5:
                return None
            return _strings(h5["path"]), _values(h5["file_stats"])
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path} is damaged: {str(exc).splitlines()[0]}") from None


def _validate(path: Path, columns: dict[str, list[str]], labels: np.ndarray, embeddings: np.ndarray,
              prompts: Mapping[str, PromptEmbeddings]) -> None:
    """Shapes that agree, labels 0/1 and finite embeddings: a cache that breaks these is refused, never used."""
    n = len(labels)
    problems = []
    if embeddings.ndim != 2 or len(embeddings) != n:
        problems.append(f"/image_embeddings has shape {embeddings.shape} for {n} rows")
    problems += [f"/{col} has {len(v)} rows, /label {n}" for col, v in columns.items() if len(v) != n]
    bad_labels = np.setdiff1d(np.unique(labels), [0, 1])
    if bad_labels.size:
        problems.append(f"/label holds {bad_labels.tolist()[:5]} (only 0 real / 1 fake allowed)")
    if embeddings.ndim == 2 and embeddings.size and not np.isfinite(embeddings).all():
        rows = int((~np.isfinite(embeddings)).any(axis=1).sum())
        problems.append(f"/image_embeddings has {rows} rows with NaN or infinite values")
    for name, p in prompts.items():
        if p.embeddings.ndim != 2 or len(p.embeddings) != len(p.texts) or len(p.labels) != len(p.texts):
            problems.append(f"/prompts/{name} has {len(p.texts)} texts but embeddings {p.embeddings.shape}, "
                            f"labels {p.labels.shape}")
        elif embeddings.ndim == 2 and p.embeddings.shape[1] != embeddings.shape[1]:
            problems.append(f"/prompts/{name} has {p.embeddings.shape[1]} dims, the images {embeddings.shape[1]}")
        elif not np.isin(p.labels, [0, 1]).all() or not np.isfinite(p.embeddings).all():
            problems.append(f"/prompts/{name} holds labels other than 0/1 or non-finite embeddings")
    if problems:
        raise UserError(f"{path} is damaged: {'; '.join(problems[:3])}; re-extract it")


def check_identity(actual: Mapping[str, Any], expect: Mapping[str, Any], what: str, remedy: str = "") -> None:
    """Raise a UserError naming every identity attribute that differs between two settings (those `expect` names),
    in the one refusal form of `core.identity`."""
    identity.check(actual, expect, what, keys=[k for k in IDENTITY_KEYS if k in expect], remedy=remedy)
