"""Reliability: kill -9 at seeded random moments, then rerun; bad input is one line and exit 2."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import evaluate
import extract_features
import fit_heads
from clipforensics.data.cache import read_cache
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
KILL_SEEDS = (0, 1, 2)


def kill_at(cmd: list[str], delay: float) -> int:
    """Start `cmd`, SIGKILL it after `delay` seconds (if still running); return its exit code."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def complete_or_absent_cache(path: Path, n_expected: int) -> None:
    """Whatever a kill left at the final path is a complete cache, or nothing."""
    if path.exists():
        assert len(read_cache(path).embeddings) == n_expected


def extract_cmd(root: Path) -> list[str]:
    return [sys.executable, str(ROOT / "extract_features.py"), "--data-root", str(root), *TINY,
            "--chunk-size", "16", "--batch-size", "8", "--max-images", "200"]


@pytest.fixture(scope="module")
def extract_reference(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill-ref") / "ref.h5"
    subprocess.run(extract_cmd(synthetic_root) + ["--out", str(out)], env=ENV, check=True, capture_output=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_extraction_killed_at_random_moments(seed, synthetic_root, extract_reference, tmp_path):
    """Kills land during start-up, model loading, chunk writing or assembly, as the seed decides."""
    cmd, reference = extract_cmd(synthetic_root), extract_reference
    n = len(read_cache(reference).embeddings)
    out = tmp_path / "killed.h5"
    rng = np.random.default_rng(seed)
    for delay in rng.uniform(2.0, 7.0, size=2):
        kill_at(cmd + ["--out", str(out)], float(delay))
        complete_or_absent_cache(out, n)
    subprocess.run(cmd + ["--out", str(out)], env=ENV, check=True, capture_output=True)
    np.testing.assert_array_equal(read_cache(out).embeddings, read_cache(reference).embeddings)
    assert not out.with_name("killed.h5.parts").exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", KILL_SEEDS[:2])
def test_heads_killed_at_random_moments(seed, tiny_cache, tmp_path):
    cmd = [sys.executable, str(ROOT / "fit_heads.py"), "--cache", str(tiny_cache), "--heads", "all",
           "--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures"]
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], env=ENV, check=True, capture_output=True)
    out = tmp_path / "killed"
    delay = float(np.random.default_rng(seed).uniform(2.0, 6.0))
    kill_at(cmd + ["--out", str(out)], delay)
    for scores in out.glob("*/scores.csv"):
        pd.read_csv(scores)  # a file at a final path is always complete
    subprocess.run(cmd + ["--out", str(out)], env=ENV, check=True, capture_output=True)
    for ref in sorted((tmp_path / "ref").glob("*/scores.csv")):
        again = out / ref.parent.name / "scores.csv"
        pd.testing.assert_frame_equal(pd.read_csv(again), pd.read_csv(ref))
    assert not list(out.rglob("*.tmp*"))


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert err and err[-1].startswith("error:"), err
    assert sum(line.startswith("error:") for line in err) == 1 and not any("Traceback" in e for e in err)
    return err[-1]


def test_unreadable_entries_are_skipped_and_listed(tmp_path, synthetic_root, capsys):
    root = tmp_path / "root"
    shutil.copytree(synthetic_root, root)
    (root / "Real_youtube" / "000" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "c.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(out), *TINY]) == 0
    failed = read_cache(out).failed
    assert "Real_youtube/000/dangling.png" in set(failed.path)


def test_corrupted_cache_given_to_heads_and_matrix(tmp_path, tiny_cache, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(tiny_cache.read_bytes()[: 20_000])
    assert fit_heads.main(["--cache", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "bad.h5" in one_line_error(capsys)
    assert evaluate.main(["matrix", "--cache", str(bad), "--out", str(tmp_path / "m")]) == 2
    one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["--heads", "nope"], "unknown head"),
    (["--heads", "zeroshot-nope"], "unknown head"),
    (["--train-fakes", "NoSuchFake"], "unknown manipulation"),
    (["--test-fakes", "Real_youtube"], "Real_youtube"),
    (["--real-split", "80/30/10"], "100"),
    (["--train-fakes", "FaceSwap", "--test-fakes", "FaceSwap", "--real-split", "100/0/0"], "split"),
])
def test_bad_head_settings_are_one_line_errors(args, message, tiny_cache, tmp_path, capsys):
    assert fit_heads.main(["--cache", str(tiny_cache), "--out", str(tmp_path / "r"), *args]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.parametrize("content", ["not json", '{"train": 3}', '[["000"]]'])
def test_bad_split_file(content, tiny_cache, tmp_path, capsys):
    split = tmp_path / "splits.json"
    split.write_text(content)
    assert fit_heads.main(["--cache", str(tiny_cache), "--out", str(tmp_path / "r"), "--split-file",
                           str(split)]) == 2
    one_line_error(capsys)


def test_output_that_cannot_be_written(tiny_cache, synthetic_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert fit_heads.main(["--cache", str(tiny_cache), "--out", str(blocker / "run")]) == 2
    one_line_error(capsys)
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(blocker / "c.h5"), *TINY]) == 2
    one_line_error(capsys)
    scores = tmp_path / "s.csv"
    pd.DataFrame({"path": ["Real_youtube/000/0.png", "FaceSwap/001_000/0.png"], "label": [0, 1],
                  "score": [0.2, 0.8]}).to_csv(scores, index=False)
    assert evaluate.main([str(scores), "--out", str(blocker / "rep")]) == 2
    one_line_error(capsys)


def test_unknown_prompt_set_and_model(synthetic_root, tmp_path, capsys):
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(tmp_path / "c.h5"), *TINY,
                                  "--prompt-sets", "v9"]) == 2
    assert "unknown prompt set" in one_line_error(capsys)
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(tmp_path / "c.h5"),
                                  "--model", "ViT-Z-99", "--pretrained", "none"]) == 2
    assert "unknown model" in one_line_error(capsys)


def test_one_class_test_set_from_the_cli(tiny_cache, tmp_path, capsys):
    cache = read_cache(tiny_cache)
    rows = cache.manifest[cache.manifest.label == 1].head(8)
    scores = tmp_path / "fakes_only.csv"
    rows.assign(split="test", score=0.7)[["path", "video", "manipulation", "label", "split", "score"]].to_csv(
        scores, index=False)
    assert evaluate.main([str(scores), "--out", str(tmp_path / "r")]) == 2
    assert "only fake" in one_line_error(capsys)


def test_cache_file_is_plain_hdf5_with_the_documented_schema(tiny_cache):
    with h5py.File(tiny_cache) as h5:
        assert set(h5) == {"image_embeddings", "path", "label", "manipulation", "video", "target", "source", "file_stats",
                           "failed", "prompts"}
        for key in ("model", "pretrained", "image_size", "mean", "std", "precision", "manifest_hash",
                    "package_version", "created"):
            assert key in h5.attrs
