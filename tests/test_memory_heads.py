"""Heads and the layer sweep read a cache's rows once, in float32, only when used (issue 24): a split's rows are
converted block by block as they are read (never held as float16 beside float32), the scored rows are read after
each fit, and block tokens (one layer, or `concat:K,L`) are read only where a head indexes them."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fit_heads
from clipforensics.data import stored
from clipforensics.data.cache import read_cache, write_cache
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.data.scores import read_scores
from clipforensics.heads import rows as rows_mod
from clipforensics.heads.features import features
from clipforensics.heads.layers import layer_view
from clipforensics.heads.saved import load_head
from clipforensics.studies import layer_sweep

CLASSES = ("Real_youtube", "FaceSwap", "NeuralTextures")
VIDEOS, FRAMES, D, W = 180, 60, 512, 24  # 60 videos of each class: every split holds both labels
BLOCK = stored.HDF5_ROWS * D * 2  # bytes of one checksummed block of the embeddings (float16)


def ffpp_manifest() -> pd.DataFrame:
    """Videos cycling over CLASSES; fakes named target_source as FF++ swaps pairs of reals."""
    records = []
    for v in range(VIDEOS):
        cls, k = CLASSES[v % 3], v // 3
        vid = f"{k:03d}" if cls == CLASSES[0] else f"{k:03d}_{k ^ 1:03d}"
        records += [(f"{cls}/{vid}/{f:03d}.png", int(cls != CLASSES[0]), cls, f"{cls}/{vid}", f"{k:03d}",
                     "" if cls == CLASSES[0] else f"{k ^ 1:03d}") for f in range(FRAMES)]
    return pd.DataFrame(records, columns=["path", "label", "manipulation", "video", "target", "source"])


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory) -> Path:
    manifest = ffpp_manifest()
    rng = np.random.default_rng(0)
    shift = manifest["label"].to_numpy()[:, None] * 0.3
    extras = {f"layers/{k}": (rng.normal(size=(len(manifest), W)) + shift).astype(np.float16) for k in range(3)}
    return write_cache(tmp_path_factory.mktemp("mem") / "c.h5", manifest=manifest, attrs={"model": "m"}, prompts={},
                       embeddings=(rng.normal(size=(len(manifest), D)) + shift).astype(np.float16),
                       failed=pd.DataFrame({"path": [], "reason": []}), extras=extras)


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str, int, np.dtype | None]]:
    """Every StoredRows.read from now on: (dataset, rows, dtype asked for)."""
    log: list[tuple[str, int, np.dtype | None]] = []
    original = stored.StoredRows.read

    def read(self, idx, *dtype):
        log.append((self.name, len(idx), dtype[0] if dtype else None))
        return original(self, idx, *dtype)
    monkeypatch.setattr(stored.StoredRows, "read", read)
    return log


def traced_peak(fn):
    """(result, peak bytes numpy and Python allocated while fn ran, beyond what was held before)."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_rows_read_as_float32_are_converted_block_by_block(cache_path):
    rows = read_cache(cache_path).embeddings
    idx = np.arange(len(rows))[::-2]  # every other row, backwards: several blocks, out of file order
    expected = rows.read(idx).astype(np.float32)
    got, peak = traced_peak(lambda: rows.read(idx, np.float32))
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert peak - got.nbytes < 4 * BLOCK < got.nbytes / 2  # a block's working copies, not all rows in float16


def test_a_split_is_held_once_in_float32_in_the_type_heads_fit_on(cache_path):
    cache = read_cache(cache_path)
    rows = make_splits(cache.manifest, ProtocolSettings()).rows
    train = rows[rows["split"] == "train"]
    feats = features(cache, rows, "train")
    _, peak = traced_peak(lambda: feats.X)  # read on first use, then held
    assert feats.X.dtype == np.float32
    assert np.array_equal(feats.X, np.asarray(cache.embeddings)[train.index].astype(np.float32))
    assert feats.y.tolist() == train["label"].tolist() and feats.video.tolist() == train["video"].tolist()
    assert peak - feats.X.nbytes < 4 * BLOCK < feats.X.nbytes / 2


def blocks_of(n: int, size: int) -> list[int]:
    return [min(size, n - at) for at in range(0, n, size)]


def test_fit_heads_streams_the_linear_heads_and_reads_the_scored_rows_after_each_fit(cache_path, tmp_path, reads,
                                                                                      monkeypatch):
    """Ridge and logistic regression read the training rows a block at a time (twice: the standardiser, then the
    sums or the standardised rows), the validation rows whole; real-only reads the training rows whole; each
    head's scored rows are read a block at a time after its fit, and scored from that read."""
    monkeypatch.setattr(rows_mod, "BLOCK", 1000)
    rows = make_splits(read_cache(cache_path).manifest, ProtocolSettings()).rows
    n = rows["split"].value_counts()
    out = tmp_path / "run"
    reads.clear()
    assert fit_heads.main(["--cache", str(cache_path), "--heads", "ridge,logreg,real-only", "--out", str(out)]) == 0
    scored = rows[rows["split"].isin(["val", "test"])]
    float32 = [m for _, m, dtype in reads if dtype == np.float32]
    train, in_blocks = blocks_of(n["train"], 1000) * 2, blocks_of(len(scored), 1000)
    assert float32 == [*train, n["val"], *in_blocks, *train, *in_blocks, n["train"], *in_blocks]
    X = np.asarray(read_cache(cache_path).embeddings)[scored.index].astype(np.float32)
    for head in ("logreg", "ridge", "real-only"):  # and the scores are the saved head's own probabilities of those rows
        table = read_scores(out / head / "scores.csv")
        assert table["path"].tolist() == scored["path"].tolist()
        proba = load_head(out / head / "model.joblib").predict_proba(X)
        assert np.array_equal(table["score"].to_numpy(), proba)


def test_a_concatenation_of_layers_is_read_only_where_indexed(cache_path, reads):
    cache = read_cache(cache_path, layers=True)
    rows = make_splits(cache.manifest, ProtocolSettings()).rows
    reads.clear()  # opening the cache checked the embeddings' blocks
    view = layer_view(cache, "concat:0,2")
    assert reads == [] and view.embeddings.shape == (len(rows), 2 * W)
    val = features(view, rows, "val")
    assert reads == []  # read when a head uses them
    picked = rows.index[rows["split"] == "val"]
    joined = np.concatenate([np.asarray(cache.layers[k])[picked] for k in (0, 2)], axis=1).astype(np.float32)
    reads.clear()
    assert np.array_equal(val.X, joined)
    assert [(name, m) for name, m, _ in reads[:2]] == [("layers/0", len(picked)), ("layers/2", len(picked))]


def test_the_sweep_streams_each_layer_and_holds_no_layer_beside_another(cache_path, tmp_path, reads, monkeypatch):
    """Per layer, in order: ridge's two passes over the training rows a block at a time, the validation rows, then
    the scored rows a block at a time; nothing of a layer is read once the next has begun."""
    monkeypatch.setattr(rows_mod, "BLOCK", 1000)
    layer_sweep.sweep(str(cache_path), ("ridge",), ProtocolSettings(), tmp_path / "sweep")
    rows = make_splits(read_cache(cache_path).manifest, ProtocolSettings()).rows
    n = rows["split"].value_counts()
    heads_read = [(name, m) for name, m, dtype in reads if dtype == np.float32]
    per_layer = [*blocks_of(n["train"], 1000) * 2, n["val"], *blocks_of(n["val"] + n["test"], 1000)]
    expected = [(name, m) for name in ("layers/0", "layers/1", "layers/2", "image_embeddings") for m in per_layer]
    assert heads_read == expected


def test_other_data_sets_are_read_after_the_fit_a_block_at_a_time(cache_path, tmp_path, reads, monkeypatch):
    """A --test-cache's rows are not held beside the fit: read and scored a block at a time after it, and the
    scores are the saved head's probabilities of those rows."""
    monkeypatch.setattr(rows_mod, "BLOCK", 1000)
    manifest = ffpp_manifest().iloc[:1800]
    manifest = manifest.assign(path="other/" + manifest["path"], video="other/" + manifest["video"])
    rng = np.random.default_rng(1)
    embeddings = (rng.normal(size=(len(manifest), D)) + manifest["label"].to_numpy()[:, None] * 0.3)
    other = write_cache(tmp_path / "other.h5", manifest=manifest, attrs={"model": "m"}, prompts={},
                        embeddings=embeddings.astype(np.float16), failed=pd.DataFrame({"path": [], "reason": []}))
    rows = make_splits(read_cache(cache_path).manifest, ProtocolSettings()).rows
    n = rows["split"].value_counts()
    reads.clear()
    assert fit_heads.main(["--cache", str(cache_path), "--heads", "ridge", "--test-cache", str(other),
                           "--test-rows", "all", "--out", str(tmp_path / "run")]) == 0
    float32 = [m for _, m, dtype in reads if dtype == np.float32]
    scored = blocks_of(n["val"] + n["test"], 1000)
    assert float32 == [*blocks_of(n["train"], 1000) * 2, n["val"], *scored, 1000, 800]
    table = read_scores(tmp_path / "run" / "ridge" / "scores.csv")
    theirs = table[table["dataset"] == "other"]
    X = np.asarray(read_cache(other).embeddings).astype(np.float32)
    assert theirs["path"].tolist() == manifest["path"].tolist()
    np.testing.assert_array_equal(theirs["score"].to_numpy(),
                                  load_head(tmp_path / "run" / "ridge" / "model.joblib").predict_proba(X))
