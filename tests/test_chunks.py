"""The extraction's chunk store and collector: saves in the background, old part files still read."""

from __future__ import annotations

import numpy as np
import pytest

from clipforensics.core.errors import UserError
from clipforensics.extract.chunks import EXTRA, ChunkCollector, ChunkStore


def test_collector_saves_each_chunk_with_its_extras_in_row_order(tmp_path):
    store = ChunkStore(tmp_path / "c.h5")
    store.dir.mkdir()
    rng = np.random.default_rng(0)
    emb, layer = rng.normal(size=(10, 4)).astype(np.float16), rng.normal(size=(10, 6)).astype(np.float16)
    with ChunkCollector(store, n_rows=10, chunk_size=4) as collector:
        for start in range(0, 10, 2):  # batches of 2 rows: chunks 0..3, 4..7, 8..9
            rows = list(range(start, start + 2))
            collector.add(rows, emb[rows], ["" if r != 5 else "bad frame" for r in rows],
                          {"layers/0": layer[rows]})
    assert store.done() == {0, 1, 2}
    loaded = [store.load(k) for k in range(3)]
    assert np.array_equal(np.concatenate([c[0] for c in loaded]), emb)
    assert np.array_equal(np.concatenate([c[2]["layers/0"] for c in loaded]), layer)
    assert [r for c in loaded for r in c[1]] == ["", "", "", "", "", "bad frame", "", "", "", ""]


def test_a_failed_background_save_is_raised_not_lost(tmp_path):
    class Failing(ChunkStore):
        def save(self, k, *args, **kwargs):
            raise UserError(f"cannot save chunk {k}: disk full")

    store = Failing(tmp_path / "c.h5")
    collector = ChunkCollector(store, n_rows=4, chunk_size=2)
    collector.add([0, 1], np.zeros((2, 3), np.float16), ["", ""])
    with pytest.raises(UserError, match="chunk 0: disk full"):
        collector.add([2, 3], np.zeros((2, 3), np.float16), ["", ""])  # waits for chunk 0's save first
    collector.close()  # the error was raised once, by the add that found it
    last = ChunkCollector(store, n_rows=2, chunk_size=2)
    last.add([0, 1], np.zeros((2, 3), np.float16), ["", ""])
    with pytest.raises(UserError, match="chunk 0: disk full"):
        last.close()  # the last chunk's save fails after the loop: close() raises it


def test_parts_written_before_extras_had_their_own_file_still_load(tmp_path):
    store = ChunkStore(tmp_path / "c.h5")
    store.dir.mkdir()
    emb, extra = np.ones((3, 2), np.float16), np.arange(9, dtype=np.float16).reshape(3, 3)
    np.savez(store.path(0), embeddings=emb, reasons=np.array(["", "", ""]), extra_names=np.array(["layers/4"]),
             **{f"{EXTRA}0": extra})
    got_emb, reasons, extras = store.load(0)
    assert np.array_equal(got_emb, emb) and reasons == ["", "", ""]
    assert list(extras) == ["layers/4"] and np.array_equal(extras["layers/4"], extra)


def test_parts_of_other_settings_are_refused_naming_every_differing_field(tmp_path):
    store = ChunkStore(tmp_path / "c.h5")
    recorded = {"model": "tiny-vit", "precision": "fp32", "chunk_size": 512, "layers": [], "perturbations": [],
                "manifest_hash": "aaaa", "prompt_sets": ["v1", "v2"]}
    store.start(recorded, overwrite=False)
    new = {**recorded, "model": "ViT-B-32", "precision": "bf16", "chunk_size": 256, "layers": [0, 4],
           "perturbations": ["jpeg:90"], "manifest_hash": "bbbb"}
    expected = ["chunk_size: 512 != 256", "layers: [] != [0, 4]", "manifest_hash: 'aaaa' != 'bbbb'",
                "model: 'tiny-vit' != 'ViT-B-32'", "perturbations: [] != ['jpeg:90']", "precision: 'fp32' != 'bf16'"]
    for refused in (lambda: store.start(new, overwrite=False), lambda: store.check(new)):
        with pytest.raises(UserError) as error:
            refused()
        assert "other settings" in str(error.value) and "; ".join(expected) in str(error.value)
    store.start(new, overwrite=True)
    store.check(new)
