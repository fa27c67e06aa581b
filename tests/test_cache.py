"""Reading a cache checks what made it: mismatches and damaged files are clear errors."""

from __future__ import annotations

import h5py
import pytest

from clipforensics.data.cache import read_attrs, read_cache
from clipforensics.core.errors import UserError


def test_expected_identity_is_checked(tiny_cache):
    attrs = read_attrs(tiny_cache)
    read_cache(tiny_cache, expect={"model": "tiny-vit", "manifest_hash": attrs["manifest_hash"]})
    with pytest.raises(UserError, match="model: 'tiny-vit' != 'ViT-B-32'"):
        read_cache(tiny_cache, expect={"model": "ViT-B-32"})
    with pytest.raises(UserError, match="image_size"):
        read_cache(tiny_cache, expect={"image_size": 224})


def test_truncated_file_is_refused(tiny_cache, tmp_path):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(tiny_cache.read_bytes()[:4096])
    with pytest.raises(UserError, match="damaged|not a readable"):
        read_cache(damaged)


def test_other_hdf5_and_missing_files_are_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = [1, 2, 3]
    with pytest.raises(UserError, match="not a clipforensics feature cache"):
        read_cache(other)
    with pytest.raises(UserError, match="not found"):
        read_cache(tmp_path / "missing.h5")
