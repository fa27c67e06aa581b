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


def test_a_cache_of_other_settings_is_refused_naming_every_differing_attribute(tiny_cache):
    attrs = read_attrs(tiny_cache)
    expect = {"model": "ViT-B-32", "pretrained": "openai", "weights_fingerprint": "tag=openai", "init_seed": 7,
              "image_size": 224, "precision": "fp16" if attrs["precision"] != "fp16" else "fp32",
              "manifest_hash": "other"}
    with pytest.raises(UserError) as refused:
        read_cache(tiny_cache, expect=expect)
    message = str(refused.value)
    assert message.startswith(f"{tiny_cache} was made with other settings (found != expected); differs in ")
    for key, value in expect.items():
        assert f"{key}: {attrs[key]!r} != {value!r}" in message
    assert message.count(" != ") == len(expect) + 1  # each attribute once, plus the legend
