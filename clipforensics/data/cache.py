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
Row datasets (N x ...) carry one CRC-32 per block of rows (schema 3, data/stored.py), every other dataset one
`crc32` of its values: flipped bytes are found on read. The file is written as its rows arrive (a block at a
time, in a child process: data/isolated.py) and read as rows are used: memory follows a block, not the file.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import h5py
import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core import identity
from clipforensics.core.io import atomic_path
from clipforensics.core.errors import UserError
from clipforensics.data.isolated import check_space, in_child
from clipforensics.data.manifest import COLUMNS, OFFICIAL_SPLIT
from clipforensics.data.stored import CHECKSUM, HDF5_ROWS, BlockChecksums, StoredRows, damaged
from clipforensics.data.stored import crc as _crc

SCHEMA_VERSION = 3
EMBEDDINGS = "image_embeddings"
STRING_ROWS = 65536  # strings written (and checksummed) this many at a time
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
    """A cache's manifest, prompts and attributes, in memory; its rows (embeddings, block tokens, perturbed
    copies) are StoredRows, read from the file when indexed."""

    path: Path
    attrs: dict[str, Any]
    manifest: pd.DataFrame
    embeddings: StoredRows | np.ndarray
    prompts: dict[str, PromptEmbeddings] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    layers: dict[int, StoredRows] = field(default_factory=dict)
    perturbed: dict[str, StoredRows] = field(default_factory=dict)
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


def _dataset(h5: h5py.File | h5py.Group, name: str, values: np.ndarray, **kwargs: Any) -> None:
    """A small dataset with the checksum of its values (strings as HDF5 returns them)."""
    ds = h5.create_dataset(name, data=values, **kwargs)
    ds.attrs[CHECKSUM] = _crc(ds[()] if values.dtype.kind in "OUS" else values)


def _write_strings(h5: h5py.File | h5py.Group, name: str, values: pd.Series) -> None:
    """A string column written STRING_ROWS at a time, its checksum (of the values joined by NUL) taken as they pass."""
    ds = h5.create_dataset(name, shape=(len(values),), dtype=_STR)
    total = 0
    for start in range(0, len(values), STRING_ROWS):
        part = values.iloc[start:start + STRING_ROWS].astype(str).to_numpy(dtype=object)
        ds[start:start + len(part)] = part
        total = zlib.crc32((("\0" if start else "") + "\0".join(part)).encode(), total)
    ds.attrs[CHECKSUM] = total


@dataclass
class CacheTable:
    """Everything of a cache but its row datasets: the manifest of its N rows and what describes them."""

    manifest: pd.DataFrame
    attrs: Mapping[str, Any]
    prompts: Mapping[str, PromptEmbeddings]
    failed: pd.DataFrame
    file_stats: np.ndarray | None = None

    def size(self, widths: Mapping[str, int]) -> int:
        """Bytes the file will take, about: float16 rows, strings with their heap records."""
        n = len(self.manifest)
        texts = [self.manifest[c] for c in STRING_COLUMNS + self.optional()] + [self.failed[c] for c in self.failed]
        chars = sum(int(col.astype(str).str.len().sum()) + 32 * len(col) for col in texts)
        return n * (2 * sum(widths.values()) + 1 + (16 if self.file_stats is not None else 0)) + chars

    def optional(self) -> tuple[str, ...]:
        return tuple(c for c in OPTIONAL_COLUMNS if c in self.manifest.columns)

    def fill(self, h5: h5py.File) -> None:
        """The manifest columns, failures, prompts and attributes."""
        for col in STRING_COLUMNS + self.optional():
            _write_strings(h5, col, self.manifest[col])
        _dataset(h5, "label", self.manifest["label"].to_numpy(dtype=np.int8))
        if self.file_stats is not None:
            _dataset(h5, "file_stats", np.asarray(self.file_stats, dtype=np.int64).reshape(len(self.manifest), 2))
        grp = h5.create_group("failed")
        for col in ("path", "reason"):
            _write_strings(grp, col, self.failed[col])
        for name, p in self.prompts.items():
            g = h5.create_group(f"prompts/{name}")
            _dataset(g, "text", np.array(p.texts, dtype=object), dtype=_STR)
            _dataset(g, "embedding", p.embeddings.astype(np.float32))
            _dataset(g, "label", np.asarray(p.labels, dtype=np.int8))
        full = {**self.attrs, "schema_version": SCHEMA_VERSION, "package_version": __version__,
                "n_images": len(self.manifest), "n_failed": len(self.failed)}
        for key, value in full.items():
            h5.attrs[key] = _encode_attr(value)


Blocks = Callable[[], Iterable[Mapping[str, np.ndarray]]]


def _fill_rows(h5: h5py.File, n: int, widths: Mapping[str, int], blocks: Blocks) -> None:
    """The row datasets, written block by block as `blocks()` yields consecutive rows, checksummed as they pass."""
    rows = max(1, min(HDF5_ROWS, n))
    datasets = {name: h5.create_dataset(name, shape=(n, w), dtype=np.float16, chunks=(rows, w))
                for name, w in widths.items()}
    sums = {name: BlockChecksums(n) for name in widths}
    at = 0
    for block in blocks():
        m = len(next(iter(block.values())))
        for name, values in block.items():
            values = np.ascontiguousarray(values, dtype=np.float16)
            datasets[name][at:at + m] = values
            sums[name].add(values)
        at += m
    if at != n:
        raise ValueError(f"the row blocks held {at} rows, the manifest {n}")
    for name, ds in datasets.items():
        ds.attrs.update(sums[name].attrs())


def _write_file(tmp: Path, table: CacheTable, widths: Mapping[str, int], blocks: Blocks) -> None:
    """The whole file (in the writer's child). The file is created by Python first, so that a folder that refuses
    it fails before HDF5 runs; an error leaves the file open: closing it after a failed write is what crashes."""
    open(tmp, "wb").close()
    cache_rows = 4 * HDF5_ROWS * max(widths.values()) * 2  # partly written HDF5 chunks stay in memory, not re-read
    h5 = h5py.File(tmp, "w", rdcc_nbytes=cache_rows, rdcc_w0=1.0)
    _fill_rows(h5, len(table.manifest), widths, blocks)
    table.fill(h5)
    h5.close()


def write_rows(path: str | Path, table: CacheTable, widths: Mapping[str, int], blocks: Blocks) -> Path:
    """Write a cache atomically from blocks of rows (`widths`: float16 columns of each row dataset by path,
    image_embeddings first): the final path appears only once everything is on disk. A folder without the
    space the file needs is refused before anything is written."""
    path = Path(path)
    check_space(path, table.size(widths))
    with atomic_path(path) as tmp:
        in_child(lambda: _write_file(tmp, table, widths, blocks), tmp)
    return path


def write_cache(path: str | Path, *, embeddings: np.ndarray, manifest: pd.DataFrame, attrs: Mapping[str, Any],
                prompts: Mapping[str, PromptEmbeddings], failed: pd.DataFrame,
                extras: Mapping[str, np.ndarray] | None = None, file_stats: np.ndarray | None = None) -> Path:
    """Write a complete cache of arrays in memory atomically (write_rows, one block of arrays' rows at a time).

    `extras` are further N-row float16 arrays by path (layers/<k>, perturbed/<kind:level>/image_embeddings);
    `file_stats` the size and mtime of each frame (data.fingerprint)."""
    arrays = {EMBEDDINGS: embeddings, **(extras or {})}
    if any(len(v) != len(manifest) for v in arrays.values()):
        raise ValueError("one embedding per manifest row expected")
    widths = {name: int(np.shape(v)[1]) for name, v in arrays.items()}

    def blocks() -> Iterable[dict[str, np.ndarray]]:
        for start in range(0, len(manifest), STRING_ROWS):
            yield {name: np.asarray(v[start:start + STRING_ROWS]) for name, v in arrays.items()}
    return write_rows(path, CacheTable(manifest, attrs, prompts, failed, file_stats), widths, blocks)


def _values(ds: h5py.Dataset) -> np.ndarray:
    """A dataset's values, checked against its stored checksum (caches of schema 1 have none)."""
    values = ds[()]
    stored = ds.attrs.get(CHECKSUM)
    if stored is not None and int(stored) != _crc(values):
        raise damaged(ds.file.filename, ds.name)
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


def _rows(path: Path, ds: h5py.Dataset, finite: bool = False) -> StoredRows:
    return StoredRows(path, ds.name.lstrip("/"), ds.shape, ds.dtype, finite)


def read_cache(path: str | Path, expect: Mapping[str, Any] | None = None, *, layers: bool = False,
               perturbed: bool = False) -> FeatureCache:
    """Open a cache; if `expect` is given, any identity attribute that differs is an error.

    The manifest, prompts and attributes are read; the embeddings are checked (every block's checksum, finite
    values) but read only when indexed, like the stored block tokens (`layers`) and perturbed copies
    (`perturbed`), which are listed only when asked and checked block by block as they are read."""
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
            embeddings = _rows(path, h5[EMBEDDINGS], finite=True)
            failed = pd.DataFrame({c: _strings(h5["failed"][c]) for c in ("path", "reason")})
            file_stats = _values(h5["file_stats"]) if "file_stats" in h5 else None
            prompts = {
                name: PromptEmbeddings(_strings(g["text"]), _values(g["embedding"]),
                                       _values(g["label"]).astype(np.int64))
                for name, g in h5.get("prompts", {}).items()
            }
            stored_layers = {int(k): _rows(path, ds) for k, ds in h5.get("layers", {}).items()} if layers else {}
            copies = ({name: _rows(path, g[EMBEDDINGS]) for name, g in h5.get("perturbed", {}).items()}
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
    embeddings.verify()
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


def _validate(path: Path, columns: dict[str, list[str]], labels: np.ndarray, embeddings: StoredRows,
              prompts: Mapping[str, PromptEmbeddings]) -> None:
    """Shapes that agree and labels 0/1 (finite embeddings: StoredRows): a cache that breaks these is refused."""
    n = len(labels)
    problems = []
    if embeddings.ndim != 2 or len(embeddings) != n:
        problems.append(f"/image_embeddings has shape {embeddings.shape} for {n} rows")
    problems += [f"/{col} has {len(v)} rows, /label {n}" for col, v in columns.items() if len(v) != n]
    bad_labels = np.setdiff1d(np.unique(labels), [0, 1])
    if bad_labels.size:
        problems.append(f"/label holds {bad_labels.tolist()[:5]} (only 0 real / 1 fake allowed)")
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
