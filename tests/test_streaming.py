"""Caches that stream (issue 24): written a block of rows at a time in a child process, read by rows and dataset,
each block of rows checked against its own checksum."""

from __future__ import annotations

import errno
import os
import signal
import zlib

import h5py
import numpy as np
import pandas as pd
import pytest

from clipforensics.core.errors import UserError
from clipforensics.data import cache as cache_mod
from clipforensics.data import isolated
from clipforensics.data.cache import read_cache, write_cache
from clipforensics.data.stored import BLOCK_CHECKSUMS, BLOCK_ROWS, CHECKSUM, StoredRows
from clipforensics.extract.chunks import ChunkStore, assemble

N, D, W = 2500, 8, 6  # three blocks of 1024 rows, the last one partial


def manifest(n: int = N) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"Real_youtube/{i // 10}/{i % 10}.png" for i in range(n)], "label": 0,
                         "manipulation": "Real_youtube", "video": [f"Real_youtube/{i // 10}" for i in range(n)],
                         "target": "", "source": ""})


def rows(seed: int, width: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float16)


@pytest.fixture
def layered(tmp_path):
    extras = {"layers/0": rows(1, W), "layers/1": rows(2, W), "perturbed/blur:3/image_embeddings": rows(3, D)}
    path = write_cache(tmp_path / "c.h5", embeddings=rows(0, D), manifest=manifest(), attrs={"model": "m"},
                       prompts={}, failed=pd.DataFrame({"path": ["x.png"], "reason": ["broken"]}), extras=extras)
    return path, {"image_embeddings": rows(0, D), **extras}


def test_every_block_of_rows_carries_the_crc32_of_its_bytes(layered):
    path, arrays = layered
    with h5py.File(path) as h5:
        for name, values in arrays.items():
            step = int(h5[name].attrs[BLOCK_ROWS])
            expected = [zlib.crc32(values[i:i + step].tobytes()) for i in range(0, N, step)]
            assert step == 1024 and list(h5[name].attrs[BLOCK_CHECKSUMS]) == expected, name
        assert int(h5["path"].attrs[CHECKSUM]) == zlib.crc32("\0".join(manifest()["path"]).encode())


def test_rows_read_by_any_index_equal_the_arrays_written(layered):
    path, arrays = layered
    cache = read_cache(path, layers=True, perturbed=True)
    assert isinstance(cache.layers[1], StoredRows) and cache.layers[1].shape == (N, W)
    pick = np.array([2499, 3, 3, 1500, 0, 1024, 1023])
    mask = np.zeros(N, bool)
    mask[::7] = True
    for got, want in ((cache.embeddings, arrays["image_embeddings"]), (cache.layers[1], arrays["layers/1"]),
                      (cache.perturbed["blur:3"], arrays["perturbed/blur:3/image_embeddings"])):
        for key in (pick, mask, slice(1000, 2100), slice(None, None, 3), -1, 5, (pick, slice(2, 4)),
                    pd.Index(pick)):
            np.testing.assert_array_equal(got[key], want[key if not isinstance(key, pd.Index) else pick])
        np.testing.assert_array_equal(np.asarray(got), want)
        assert got.astype(np.float32).dtype == np.float32 and len(got) == N and got.dtype == np.float16


def test_reading_one_layer_checks_only_its_blocks(layered, tmp_path):
    path, arrays = layered
    with h5py.File(path, "r+") as h5:
        h5["layers/1"][1100, 2] = -h5["layers/1"][1100, 2] - 1  # block 1 of layer 1 damaged
    cache = read_cache(path, layers=True)
    np.testing.assert_array_equal(np.asarray(cache.layers[0]), arrays["layers/0"])
    np.testing.assert_array_equal(cache.layers[1][:1024], arrays["layers/1"][:1024])
    np.testing.assert_array_equal(cache.layers[1][[2100, 5]], arrays["layers/1"][[2100, 5]])
    with pytest.raises(UserError, match=r"layers/1 \(rows 1024..2047\) does not match its checksum"):
        cache.layers[1][[5, 1500]]


def test_a_cache_of_schema_2_is_still_read_and_checked(tmp_path):
    """One crc32 per dataset, as the writer before streaming stored it."""
    path = write_cache(tmp_path / "c.h5", embeddings=rows(0, D), manifest=manifest(), attrs={}, prompts={},
                       failed=pd.DataFrame({"path": [], "reason": []}), extras={"layers/0": rows(1, W)})
    with h5py.File(path, "r+") as h5:
        for name in ("image_embeddings", "layers/0"):
            ds = h5[name]
            del ds.attrs[BLOCK_CHECKSUMS], ds.attrs[BLOCK_ROWS]
            ds.attrs[CHECKSUM] = zlib.crc32(ds[()].tobytes())
        h5.attrs["schema_version"] = 2
    cache = read_cache(path, layers=True)
    np.testing.assert_array_equal(cache.layers[0][[7, 2]], rows(1, W)[[7, 2]])
    with h5py.File(path, "r+") as h5:
        h5["layers/0"][0, 0] = 100
    with pytest.raises(UserError, match="layers/0 does not match its checksum"):
        read_cache(path, layers=True).layers[0][[1]]


def test_a_crashing_writer_is_an_error_of_the_child_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "_fill_rows", lambda *a: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(OSError, match="the HDF5 writer died \\(SIGSEGV\\)"):
        write_cache(tmp_path / "c.h5", embeddings=rows(0, D), manifest=manifest(), attrs={}, prompts={},
                    failed=pd.DataFrame({"path": [], "reason": []}))
    assert os.listdir(tmp_path) == []


def test_a_folder_without_the_space_is_refused_before_writing(tmp_path, monkeypatch):
    need = N * (D + W) * 2
    monkeypatch.setattr(isolated.shutil, "disk_usage", lambda _: type("U", (), {"free": need})())
    with pytest.raises(OSError) as refused:
        write_cache(tmp_path / "c.h5", embeddings=rows(0, D), manifest=manifest(), attrs={}, prompts={},
                    failed=pd.DataFrame({"path": [], "reason": []}), extras={"layers/0": rows(1, W)})
    assert refused.value.errno == errno.ENOSPC and "MiB free" in str(refused.value)
    assert os.listdir(tmp_path) == []


def test_assembly_streams_the_decoded_rows_of_every_chunk(tmp_path):
    out, chunk = tmp_path / "c.h5", 300
    store = ChunkStore(out)
    store.dir.mkdir()
    emb, layer = rows(0, D), rows(1, W)
    reasons = ["bad" if i % 97 == 0 else "" for i in range(N)]
    for k, start in enumerate(range(0, N, chunk)):
        part = slice(start, start + chunk)
        store.save(k, emb[part], reasons[part], {"layers/3": layer[part]})
    ok = np.array(reasons) == ""
    assemble(out, store, -(-N // chunk), manifest(), {"model": "m"}, dict, np.zeros((N, 2), np.int64))
    cache = read_cache(out, layers=True)
    np.testing.assert_array_equal(np.asarray(cache.embeddings), emb[ok])
    np.testing.assert_array_equal(np.asarray(cache.layers[3]), layer[ok])
    assert cache.manifest["path"].tolist() == manifest()["path"][ok].tolist()
    assert cache.failed["path"].tolist() == manifest()["path"][~ok].tolist() and not store.dir.exists()
