"""Rows of a cache's N x W datasets, checked and read a block of rows at a time.

A 1M-frame `--layers all` cache is 20-50 GB: a reader must take the rows and the dataset it uses, not the file.
Each row dataset carries one CRC-32 per block of `crc32_rows` rows (`crc32_blocks`), computed by the writer as
the rows pass, so reading one layer, or one split's rows, checks those blocks only. Caches of schema 2 carry
one checksum per dataset (`crc32`): such a dataset is read and checked whole on access.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from clipforensics.core.errors import UserError

CHECKSUM = "crc32"  # one CRC-32 of a whole dataset (strings, labels; row datasets of schema 2)
BLOCK_CHECKSUMS = "crc32_blocks"
BLOCK_ROWS = "crc32_rows"
HDF5_ROWS = 1024  # rows of one HDF5 chunk of a row dataset
MAX_BLOCKS = 8192  # checksums per dataset: an HDF5 attribute holds at most 64 KiB


def block_rows(n_rows: int) -> int:
    """Rows per checksum: whole HDF5 chunks, few enough blocks to fit one attribute."""
    return HDF5_ROWS * max(1, -(-n_rows // (HDF5_ROWS * MAX_BLOCKS)))


class BlockChecksums:
    """CRC-32 of each block of rows, accumulated as consecutive rows are written (no block is held)."""

    def __init__(self, n_rows: int) -> None:
        self.rows = block_rows(n_rows)
        self.sums = np.zeros(max(1, -(-n_rows // self.rows)), dtype=np.uint32)
        self.at = 0

    def add(self, values: np.ndarray) -> None:
        done = 0
        while done < len(values):
            block, offset = divmod(self.at, self.rows)
            take = min(self.rows - offset, len(values) - done)
            piece = np.ascontiguousarray(values[done:done + take])
            self.sums[block] = zlib.crc32(piece, int(self.sums[block]))
            done += take
            self.at += take

    def attrs(self) -> dict[str, Any]:
        return {BLOCK_CHECKSUMS: self.sums, BLOCK_ROWS: self.rows}


def crc(values: np.ndarray) -> int:
    """CRC-32 of a dataset's values (strings joined by NUL), independent of how HDF5 lays them out."""
    if values.dtype.kind in "OUS":
        data = "\0".join(v.decode() if isinstance(v, bytes) else str(v) for v in values.ravel()).encode()
    else:
        data = np.ascontiguousarray(values)  # zlib reads the array's own buffer: no copy
    return zlib.crc32(data)


def damaged(path: str | os.PathLike, what: str) -> UserError:
    return UserError(f"{path}: dataset {what} does not match its checksum (the file is damaged); re-extract it")


def _groups(idx: np.ndarray, rows: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(block, output positions, rows within the block) of the wanted rows, block by block in file order."""
    order = np.argsort(idx, kind="stable")
    blocks = idx[order] // rows
    cuts = np.flatnonzero(np.diff(blocks)) + 1
    for part in np.split(np.arange(len(idx)), cuts):
        if len(part):
            b = int(blocks[part[0]])
            yield b, order[part], idx[order[part]] - b * rows


class StoredRows:
    """An N x W dataset of a cache file, read when indexed (rows, or rows and columns), never held.

    Indexing reads the blocks that hold the rows asked for, each checked against its checksum (and, with
    `finite`, for NaN or infinite values); `np.asarray` reads every row. The file must not change meanwhile."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype, finite: bool = False) -> None:
        self.path, self.name, self.shape, self.dtype, self.finite = path, name, tuple(shape), np.dtype(dtype), finite
        self._stamp = _stamp(path)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype, copy=False)

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return self[:].astype(dtype, copy=False)

    def copy(self) -> np.ndarray:
        """Every row, read now: an array that outlives the file (a re-extraction may replace it)."""
        return self[:]

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows])][0][cols]
        if isinstance(rows, slice):
            idx = np.arange(len(self))[rows]
        else:
            idx = np.asarray(rows)
            idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64, copy=False)
            idx = np.where(idx < 0, idx + len(self), idx)
        return self.read(idx)[(slice(None), cols)]

    def read(self, idx: np.ndarray, dtype: Any = None) -> np.ndarray:
        """The rows `idx` (in that order), each block that holds one read and checked once. With `dtype` (float32
        for a head), each block is converted as it is read: the rows are never held in both types."""
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"rows {idx.min()}..{idx.max()} of /{self.name}, which has {len(self)}")
        if _stamp(self.path) != self._stamp:
            raise UserError(f"{self.path} changed while it was being read; rerun")
        try:
            return self._read(idx, self.dtype if dtype is None else np.dtype(dtype))
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{self.path} is damaged: {str(exc).splitlines()[0]}") from None

    def _read(self, idx: np.ndarray, dtype: np.dtype) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=dtype)
        with h5py.File(self.path, "r") as h5:
            ds = h5[self.name]
            sums = ds.attrs.get(BLOCK_CHECKSUMS)
            if sums is None:  # schema 2: one checksum for the whole dataset
                out[:] = self._checked(ds[()], ds.attrs.get(CHECKSUM), self.name)[idx]
                return out
            rows = int(ds.attrs[BLOCK_ROWS])
            for b, at, within in _groups(idx, rows):
                block = ds[b * rows:(b + 1) * rows]
                self._checked(block, sums[b], f"{self.name} (rows {b * rows}..{b * rows + len(block) - 1})")
                out[at] = block[within]
        return out

    def verify(self) -> None:
        """Check every block (checksum, finite values) without keeping any."""
        for start in range(0, len(self), block_rows(len(self)) * 4):
            self.read(np.arange(start, min(len(self), start + block_rows(len(self)) * 4)))

    def _checked(self, values: np.ndarray, stored: Any, what: str) -> np.ndarray:
        if self.finite and values.size and not np.isfinite(values).all():
            rows = int((~np.isfinite(values)).reshape(len(values), -1).any(axis=1).sum())
            raise UserError(f"{self.path} is damaged: /{self.name} has {rows} rows with NaN or infinite values; "
                            "re-extract it")
        if stored is not None and int(stored) != zlib.crc32(np.ascontiguousarray(values)):
            raise damaged(self.path, f"/{what}")
        return values


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns
