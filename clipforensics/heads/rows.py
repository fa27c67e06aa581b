"""The rows a head fits on or scores: held in memory, or read from the cache a block of rows at a time.

A head that needs the whole matrix (real-only, prompt-features; any head on validation rows) reads `Features.X`
once, as float32; the linear heads stream `Features.blocks()` (heads/linear.py) and never hold the training rows
as read, and scores are computed a block at a time from the file (`probabilities`), so fitting ridge on a split
of a million frames holds the validation rows and one block, not the split (issue 24).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import numpy as np

BLOCK = 8192  # rows read, converted and processed at once by a streaming head or a scorer (25 MiB at 768-d)


class RowSource(Protocol):
    """Rows read on demand: a cache's StoredRows, or block tokens joined side by side (heads/layers.py)."""

    def read(self, idx: np.ndarray, dtype: Any = None) -> np.ndarray: ...


def rows_float32(values: RowSource | np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The rows `idx` in float32, the heads' input type: from the file without a float16 copy of them."""
    if isinstance(values, np.ndarray):
        return values[idx].astype(np.float32)
    return values.read(idx, np.float32)


class Features:
    """Embeddings of some rows with what selection needs: labels and video ids.

    Built from a matrix (`Features(X, y, video)`) or from rows of a cache not yet read (`Features.stored`): then
    `X` reads them on first use and holds them, and `blocks()` reads them a block at a time without holding them.
    """

    def __init__(self, X: np.ndarray | None, y: np.ndarray, video: np.ndarray) -> None:
        self._held, self.y, self.video = X, y, video
        self._source: RowSource | None = None
        self._idx: np.ndarray | None = None

    @classmethod
    def stored(cls, source: RowSource, idx: np.ndarray, y: np.ndarray, video: np.ndarray) -> "Features":
        """The rows `idx` of `source`, read only when a head asks for them."""
        feats = cls(None, y, video)
        feats._source, feats._idx = source, np.asarray(idx)
        return feats

    @property
    def X(self) -> np.ndarray:
        """Every row in float32, read on first use and then held."""
        if self._held is None:
            self._held = rows_float32(self._source, self._idx)
        return self._held

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(positions, float32 rows) of consecutive blocks: from memory when held, else read from the file."""
        size = BLOCK
        for start in range(0, len(self.y), size):
            at = slice(start, min(start + size, len(self.y)))
            yield at, self._held[at] if self._held is not None else rows_float32(self._source, self._idx[at])


def probabilities(predicts: list[Callable[[np.ndarray], np.ndarray]], source: RowSource | np.ndarray,
                  idx: np.ndarray) -> list[np.ndarray]:
    """Each predictor's P(fake) of the rows `idx`, read once and scored a block at a time (every step of a head
    works row by row); the probabilities keep the type each head gives them."""
    parts: list[list[np.ndarray]] = [[] for _ in predicts]
    for start in range(0, max(len(idx), 1), BLOCK):
        X = rows_float32(source, idx[start:start + BLOCK])
        for part, predict in zip(parts, predicts):
            part.append(predict(X))
    return [np.concatenate(part) for part in parts]
