"""Writer side of extraction: finished chunks of rows saved atomically under `<out>.parts/`, then
streamed into one cache file, a chunk at a time (a merge of shards the same way).

A kill -9 loses at most the chunk being saved and the one being filled; the rerun skips every finished chunk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core import identity as identity_mod
from clipforensics.core.io import (atomic_path, exclusive_lock, read_json_object, remove_stale_temps, sidecar,
                                   user_os_error, write_json)
from clipforensics.data import cache as cache_mod
from clipforensics.core.paths import temp_sibling
from clipforensics.core.shards import Shard


EXTRA = "extra_"


class ChunkStore:
    """Finished chunks of a run in progress: `<out>.parts/chunk-<k>.npz`, each written atomically.

    A chunk's extras (block tokens, perturbed copies) sit side by side in one raw `chunk-<k>.extras.npy`,
    written before the `.npz` that marks the chunk done: a zip member is checksummed when written and
    again when read, and memory-mapping the raw file lets assembly copy each row once. With 12 layers
    the extras are 18 times the embeddings' bytes."""

    def __init__(self, out: Path) -> None:
        self.dir = out.with_name(out.name + ".parts")

    def path(self, k: int) -> Path:
        return self.dir / f"chunk-{k:06d}.npz"

    def extras_path(self, k: int) -> Path:
        return self.dir / f"chunk-{k:06d}.extras.npy"

    def done(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.dir.glob("chunk-*.npz")} if self.dir.exists() else set()

    def save(self, k: int, embeddings: np.ndarray, reasons: list[str],
             extras: dict[str, np.ndarray] | None = None) -> None:
        """`extras`: further per-row arrays by cache path (layers/3, perturbed/jpeg:50/image_embeddings)."""
        extras = extras or {}
        try:
            if extras:
                block = np.concatenate(list(extras.values()), axis=1, dtype=np.float16)
                with atomic_path(self.extras_path(k), suffix=".npy") as tmp:
                    np.save(tmp, block)
            with atomic_path(self.path(k), suffix=".npz") as tmp:
                np.savez(tmp, embeddings=embeddings.astype(np.float16), reasons=np.array(reasons, dtype=str),
                         extra_names=np.array(list(extras), dtype=str),
                         extra_widths=np.array([v.shape[1] for v in extras.values()], dtype=np.int64))
        except OSError as exc:
            raise user_os_error(exc, f"save chunk {k} of the extraction") from None

    def load(self, k: int) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
        """The chunk's embeddings, reasons and extras (read-only views of the memory-mapped extras file)."""
        with np.load(self.path(k)) as z:
            names = [str(n) for n in z["extra_names"]] if "extra_names" in z else []
            if "extra_widths" in z:
                block = np.load(self.extras_path(k), mmap_mode="r") if names else None
                edges = np.concatenate([[0], np.cumsum(z["extra_widths"])])
                extras = {name: block[:, edges[i]:edges[i + 1]] for i, name in enumerate(names)}
            else:  # parts written before the extras had their own file
                extras = {name: z[f"{EXTRA}{i}"] for i, name in enumerate(names)}
            return z["embeddings"], [str(r) for r in z["reasons"]], extras

    def reasons(self, k: int) -> np.ndarray:
        """Why each row of chunk k failed ('' for rows that decoded), without reading its rows."""
        with np.load(self.path(k)) as z:
            return z["reasons"].astype(str)

    def identity_file(self) -> Path:
        return self.dir / "identity.json"

    def start(self, identity: dict[str, Any], overwrite: bool) -> None:
        """Resume only a run with the same identity; anything else is refused or (--overwrite) wiped."""
        remove_stale_temps(self.dir)
        if self.identity_file().exists() and identity_mod.claim(
                self._recorded(), identity, f"the unfinished extraction in {self.dir}", overwrite=overwrite,
                replace=lambda: shutil.rmtree(self.dir)):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.identity_file(), identity)

    def check(self, identity: dict[str, Any]) -> None:
        """For followers and merges: the parts must exist and have been made with these settings."""
        if not self.identity_file().exists():
            raise UserError(f"no extraction parts at {self.dir}: run the shards first")
        identity_mod.check(self._recorded(), identity, f"the extraction in {self.dir}",
                           remedy="rerun the shards with these settings")

    def _recorded(self) -> dict[str, Any]:
        return read_json_object(self.identity_file(), "the identity of unfinished extraction parts")

    def mark_shard_done(self, shard: Shard) -> None:
        write_json(self.dir / f"shard-{shard.rank}-of-{shard.world}.done", {"rank": shard.rank, "world": shard.world})

    def remove(self) -> None:
        """The parts gone in one step (renamed aside, then deleted): a kill part-way leaves a dead run's temporary,
        which the next run clears, never chunks without their identity file that a later run would adopt."""
        aside = temp_sibling(self.dir)
        try:
            os.replace(self.dir, aside)
        except FileNotFoundError:  # none, or another rank removed them first
            return
        shutil.rmtree(aside, ignore_errors=True)

    def remove_leftover(self, identity: dict[str, Any]) -> None:
        """For a cache found complete: its own parts, left by a run killed after the cache was installed and before
        they were removed (parts of other settings stay: they are another run's work)."""
        remove_stale_temps(self.dir.parent)
        if self.identity_file().exists() and not identity_mod.differences(self._recorded(), identity):
            self.remove()


@contextlib.contextmanager
def output_lock(out: Path, shard: Shard | None = None) -> Iterator[None]:
    """Refuse a second extraction writing the same cache (or the same shard of it) at the same time."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out.parent}: {exc.strerror}") from None
    part = f".shard-{shard.rank}-of-{shard.world}" if shard and not shard.single else ""
    with exclusive_lock(out.with_name(f"{out.name}{part}.lock"), f"{out}{part.replace('.', ' ')}"):
        if not part:
            remove_stale_temps(out.parent)
        yield


def plan_batches(chunks: list[int], n_rows: int, chunk_size: int, batch_size: int) -> list[list[int]]:
    """Batches never straddle chunks, so a chunk is complete exactly when its last batch is."""
    out = []
    for k in chunks:
        rows = range(k * chunk_size, min((k + 1) * chunk_size, n_rows))
        out += [list(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    return out


class ChunkCollector:
    """Gathers batch results per chunk and saves a chunk the moment its last row arrives.

    Saves run on one background thread, one at a time, while the next batches are decoded and embedded:
    with the block tokens of 12 layers a 512-row chunk is ~9 MiB, and writing it inside the loop cost
    the GPU pipeline a third of its image loop. A failed save is raised by the next add() or by close();
    a kill loses at most the chunk being saved and the one being filled. Use it as a context manager.
    """

    def __init__(self, store: ChunkStore, n_rows: int, chunk_size: int) -> None:
        self.store, self.n_rows, self.chunk_size = store, n_rows, chunk_size
        self.pending: dict[int, tuple[list[np.ndarray], list[str], dict[str, list[np.ndarray]]]] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
        self._saving: Future | None = None

    def add(self, idx: list[int], embeddings: np.ndarray, reasons: list[str],
            extras: dict[str, np.ndarray] | None = None) -> None:
        k = idx[0] // self.chunk_size
        parts, why, more = self.pending.setdefault(k, ([], [], {}))
        parts.append(embeddings)
        why.extend(reasons)
        for name, values in (extras or {}).items():
            more.setdefault(name, []).append(values)
        if idx[-1] == min((k + 1) * self.chunk_size, self.n_rows) - 1:
            self._wait()
            self._saving = self._writer.submit(self.store.save, k, np.concatenate(parts), why,
                                               {n: np.concatenate(v) for n, v in more.items()})
            del self.pending[k]

    def _wait(self) -> None:
        """Block until the save in flight is on disk; raise its error."""
        saving, self._saving = self._saving, None
        if saving is not None:
            saving.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._writer.shutdown(wait=True)

    def __enter__(self) -> "ChunkCollector":
        return self

    def __exit__(self, exc_type: type | None, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the loop's own error is the one to report
            self.close()


def _kept(store: ChunkStore, n_chunks: int, manifest: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Which rows decoded (one bool per row) and the failed images with their reasons, read from the parts'
    small members only."""
    why = np.concatenate([store.reasons(k) for k in range(n_chunks)])
    ok = why == ""
    return ok, pd.DataFrame({"path": manifest["path"][~ok].to_numpy(), "reason": why[~ok].astype(object)})


def _row_blocks(store: ChunkStore, n_chunks: int, ok: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """Each chunk's decoded rows, one chunk at a time (extras memory-mapped): what assembly holds at once."""
    start = 0
    for k in range(n_chunks):
        embeddings, reasons, extras = store.load(k)
        keep = ok[start:start + len(reasons)]
        start += len(reasons)
        if keep.any():  # a boolean index copies even when it keeps every row
            rows = {cache_mod.EMBEDDINGS: embeddings, **extras}
            yield rows if keep.all() else {name: values[keep] for name, values in rows.items()}


def assemble(out: Path, store: ChunkStore, n_chunks: int, manifest: pd.DataFrame, attrs: dict[str, Any],
             prompts: Callable[[], dict[str, cache_mod.PromptEmbeddings]], file_stats: np.ndarray) -> Path:
    """Stream every chunk into the cache (failed images listed apart), then drop the parts."""
    ok, failed = _kept(store, n_chunks, manifest)
    if not ok.any():
        store.remove()
        raise UserError(f"all {len(manifest)} images failed to decode (first: {failed.iloc[0].path}: "
                        f"{failed.iloc[0].reason})")
    first, _, extras = store.load(0)
    widths = {cache_mod.EMBEDDINGS: first.shape[1], **{name: v.shape[1] for name, v in extras.items()}}
    attrs = {**attrs, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    table = cache_mod.CacheTable(manifest[ok].reset_index(drop=True), attrs, prompts(), failed, file_stats[ok])
    try:
        cache_mod.write_rows(out, table, widths, lambda: _row_blocks(store, n_chunks, ok))
        write_json(sidecar(out), {**attrs, "n_images": int(ok.sum()), "n_failed": int((~ok).sum())})
    except OSError as exc:
        raise user_os_error(exc, f"write the cache {out}") from None
    store.remove()
    return out
