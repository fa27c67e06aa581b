"""Beyond one process: torchrun ranks and --shard K/N jobs build the same cache as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import extract_features
from clipforensics.data.cache import read_cache
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
SMALL = [*TINY, "--chunk-size", "64", "--max-images", "300", "--precision", "fp32"]


def run(root: Path, out: Path, *extra: str, merge: bool = False) -> int:
    head = ["merge"] if merge else []
    return extract_features.main([*head, "--data-root", str(root), "--out", str(out), *SMALL, *extra])


@pytest.fixture(scope="module")
def reference(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "single.h5"
    assert run(synthetic_root, out) == 0
    return out


def assert_same_cache(a: Path, b: Path) -> None:
    ca, cb = read_cache(a), read_cache(b)
    np.testing.assert_array_equal(ca.embeddings, cb.embeddings)
    assert ca.manifest.equals(cb.manifest)
    assert ca.identity() == cb.identity()
    assert {k: v.texts for k, v in ca.prompts.items()} == {k: v.texts for k, v in cb.prompts.items()}


@pytest.mark.slow
def test_torchrun_two_ranks_with_gloo_equals_one_process(synthetic_root, reference, tmp_path):
    out = tmp_path / "ddp.h5"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", "--master_port=29533",
           str(ROOT / "extract_features.py"), "--data-root", str(synthetic_root), "--out", str(out), *SMALL]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_cache(out, reference)
    assert not out.with_name("ddp.h5.parts").exists()


def test_shards_then_merge_equal_one_process(synthetic_root, reference, tmp_path, capsys):
    out = tmp_path / "sharded.h5"
    assert run(synthetic_root, out, "--shard", "1/2") == 0
    assert not out.exists() and "merge" in capsys.readouterr().err
    assert run(synthetic_root, out, merge=True) == 2
    assert "chunks missing" in capsys.readouterr().err
    assert run(synthetic_root, out, "--shard", "0/2") == 0
    assert run(synthetic_root, out, merge=True) == 0
    assert_same_cache(out, reference)


def test_merge_refuses_parts_made_with_other_settings(synthetic_root, tmp_path, capsys):
    out = tmp_path / "mixed.h5"
    for k in ("0/2", "1/2"):
        assert run(synthetic_root, out, "--shard", k) == 0
    assert run(synthetic_root, out, "--init-seed", "5", merge=True) == 2
    assert "other settings" in capsys.readouterr().err
    assert not out.exists()


def test_merge_without_parts_and_bad_shard_are_errors(synthetic_root, tmp_path, capsys):
    assert run(synthetic_root, tmp_path / "none.h5", merge=True) == 2
    assert "run the shards first" in capsys.readouterr().err
    for bad in ("2/2", "x", "1-2"):
        assert run(synthetic_root, tmp_path / "bad.h5", "--shard", bad) == 2
        assert "--shard" in capsys.readouterr().err
