"""extract_features.py end to end on the tiny model: schema, resume, bad input, refusal rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import extract_features
from clipforensics.extract import run as extraction
from clipforensics.data.cache import read_cache
from clipforensics.data.manifest import ManifestSettings, manifest_hash, scan
from clipforensics.extract.prompts import PROMPT_SETS
from conftest import TINY, kill_when, lock_held_elsewhere

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 48 * 2 * 5  # conftest's synthetic_root


def run(root: Path, out: Path, *extra: str) -> int:
    return extract_features.main(["--data-root", str(root), "--out", str(out), *TINY, *extra])


def test_schema_shapes_dtypes_and_attributes(tiny_cache, synthetic_root):
    cache = read_cache(tiny_cache)
    manifest = scan(ManifestSettings(data_root=str(synthetic_root)))
    assert len(cache.embeddings) == len(manifest) == N_IMAGES
    assert cache.embeddings.shape[1] == 128 and cache.embeddings.dtype == np.float16
    assert cache.manifest["path"].tolist() == manifest["path"].tolist()
    assert (cache.manifest["label"].to_numpy() == manifest["label"].to_numpy()).all()
    a = cache.attrs
    assert a["model"] == "tiny-vit" and a["pretrained"] == "none" and a["random_weights"]
    assert a["image_size"] == 64 and len(a["mean"]) == 3 and a["precision"] in ("bf16", "fp32")
    assert a["manifest_hash"] == manifest_hash(manifest)
    assert a["package_version"] and a["created"] and a["n_failed"] == 0
    assert a["precision_reason"].startswith("auto: CPU") and "uint8" in a["preprocessing"]
    with h5py.File(tiny_cache) as h5:
        assert h5["image_embeddings"].dtype == np.float16
        assert {"path", "label", "manipulation", "video", "target", "source", "failed", "prompts"} <= set(h5)
    assert tiny_cache.with_name("tiny.h5.json").exists()


def test_prompts_are_stored_with_their_classes(tiny_cache):
    cache = read_cache(tiny_cache)
    assert set(cache.prompts) == set(PROMPT_SETS)
    v2 = cache.prompts["v2"]
    labels = dict(zip(v2.texts, v2.labels.tolist()))
    assert labels == {"Authentic face": 0, "AI-Generated face": 1}
    assert v2.embeddings.shape == (2, 128) and v2.embeddings.dtype == np.float32
    bank = cache.prompts["bank"]
    assert set(bank.labels.tolist()) == {0, 1} and len(bank.texts) == len(bank.labels) >= 6


def test_embeddings_match_a_direct_forward(tiny_cache, synthetic_root):
    """The cache row of an image is the model's embedding of that very image."""
    from clipforensics.extract.encoders import load_model
    from clipforensics.extract.settings import ModelSettings

    cache = read_cache(tiny_cache)
    loaded = load_model(ModelSettings(model="tiny-vit", pretrained="none"), "cpu", cache.attrs["precision"])
    rows = [0, 57, len(cache.manifest) - 1]
    imgs = [loaded.preprocess(Image.open(synthetic_root / cache.manifest.path[i]).convert("RGB")) for i in rows]
    direct = loaded.encode_images(__import__("torch").stack(imgs)).numpy()
    np.testing.assert_allclose(cache.embeddings[rows].astype(np.float32), direct, rtol=2e-2, atol=2e-2)


def test_rerun_with_same_settings_does_nothing_and_other_settings_are_refused(tiny_cache, synthetic_root, capsys):
    before = tiny_cache.stat().st_mtime_ns
    assert run(synthetic_root, tiny_cache) == 0
    assert tiny_cache.stat().st_mtime_ns == before
    assert "nothing to do" in capsys.readouterr().err
    assert run(synthetic_root, tiny_cache, "--init-seed", "1") == 2
    assert "other settings" in capsys.readouterr().err
    assert tiny_cache.stat().st_mtime_ns == before


def test_overwrite_replaces(tmp_path, synthetic_root):
    out = tmp_path / "c.h5"
    assert run(synthetic_root, out, "--max-images", "10") == 0
    assert run(synthetic_root, out, "--max-images", "12", "--overwrite") == 0
    assert len(read_cache(out).embeddings) == 12


def test_max_images_spreads_over_all_classes(tmp_path, synthetic_root):
    out = tmp_path / "c.h5"
    assert run(synthetic_root, out, "--max-images", "20") == 0
    cache = read_cache(out)
    assert len(cache.embeddings) == 20 and cache.manifest.manipulation.nunique() == 5


def test_crash_mid_run_resumes_to_identical_embeddings(tmp_path, synthetic_root, monkeypatch):
    """A failure after two chunks leaves no final file; the rerun redoes only the missing chunks."""
    reference = tmp_path / "ref.h5"
    assert run(synthetic_root, reference, "--chunk-size", "24") == 0
    out = tmp_path / "resumed.h5"
    saved = []
    original = extraction.ChunkStore.save

    def crash_after_two(self, k, emb, reasons, extras=None):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(k)
        original(self, k, emb, reasons, extras)

    monkeypatch.setattr(extraction.ChunkStore, "save", crash_after_two)
    assert run(synthetic_root, out, "--chunk-size", "24") == 130
    assert not out.exists() and len(list(out.with_name("resumed.h5.parts").glob("chunk-*.npz"))) == 2
    monkeypatch.setattr(extraction.ChunkStore, "save", original)
    computed = []
    monkeypatch.setattr(extraction.ChunkStore, "save",
                        lambda self, k, e, r, x=None: (computed.append(k), original(self, k, e, r, x)))
    assert run(synthetic_root, out, "--chunk-size", "24") == 0
    assert computed == list(range(2, -(-N_IMAGES // 24)))
    np.testing.assert_array_equal(read_cache(out).embeddings, read_cache(reference).embeddings)
    assert not out.with_name("resumed.h5.parts").exists()


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted(tmp_path, synthetic_root):
    """A real SIGKILL in the middle of extraction: nothing at the final path, rerun completes identically."""
    cmd = [sys.executable, str(ROOT / "extract_features.py"), "--data-root", str(synthetic_root), *TINY,
           "--chunk-size", "8", "--batch-size", "4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    reference = tmp_path / "ref.h5"
    subprocess.run(cmd + ["--out", str(reference)], check=True, env=env, capture_output=True)
    out = tmp_path / "killed.h5"
    parts = tmp_path / "killed.h5.parts"
    kill_when(cmd + ["--out", str(out)], lambda: len(list(parts.glob("chunk-*.npz"))) >= 3, timeout=60)
    assert not out.exists()
    subprocess.run(cmd + ["--out", str(out)], check=True, env=env, capture_output=True)
    np.testing.assert_array_equal(read_cache(out).embeddings, read_cache(reference).embeddings)


@pytest.fixture()
def damaged_root(tmp_path, synthetic_root) -> Path:
    root = tmp_path / "damaged"
    shutil.copytree(synthetic_root, root)
    (root / "Real_youtube" / "000" / "000.png").write_bytes(b"")
    png = root / "Real_youtube" / "001" / "000.png"
    png.write_bytes(png.read_bytes()[:200])
    (root / "FaceSwap").iterdir().__next__().joinpath("000.png").write_text("not an image")
    return root


def test_bad_files_are_recorded_and_skipped(tmp_path, damaged_root, capsys):
    out = tmp_path / "c.h5"
    assert run(damaged_root, out) == 0
    cache = read_cache(out)
    assert len(cache.failed) == 3 and len(cache.embeddings) == N_IMAGES - 3
    assert set(cache.failed.path) & set(cache.manifest.path) == set()
    assert all(cache.failed.reason.str.len() > 0)
    assert "3 failed" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "empty-class", "all-fail"])
def test_bad_roots_are_one_line_errors(tmp_path, synthetic_root, case, capsys):
    root = tmp_path / "root"
    if case == "empty-class":
        shutil.copytree(synthetic_root, root)
        (root / "Empty").mkdir()
    elif case == "all-fail":
        for cls in ("Real_youtube", "FaceSwap"):
            (root / cls / "000_001").mkdir(parents=True)
            (root / cls / "000_001" / "0.png").write_bytes(b"")
    assert run(root, tmp_path / "c.h5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and sum(line.startswith("error:") for line in err) == 1
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "c.h5").exists()


def test_second_writer_is_refused_by_the_lock(tmp_path, synthetic_root, capsys):
    out = tmp_path / "c.h5"
    with lock_held_elsewhere(tmp_path / "c.h5.lock"):
        assert run(synthetic_root, out) == 2
    assert "another process is writing" in capsys.readouterr().err
    assert not out.exists()


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        extract_features.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--data-root", "--model", "--pretrained", "--batch-size", "--workers", "--device",
                 "--precision", "--prompt-sets", "--max-images", "--video-pattern", "--overwrite"):
        assert flag in text


# ---------------------------------------------------------------- perturbations at the frame's scale (issue 22)

def _frame(size: int = 512) -> np.ndarray:
    """A smooth frame with detail at several scales (what blur and noise act on)."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(2 * np.pi * (3 + c) * x) * np.cos(2 * np.pi * (5 - c) * y) for c in range(3)]
    return np.clip(np.rint(127.5 + 100 * np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def _model_input(img: Image.Image, size: int = 64) -> np.ndarray:
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def test_a_png_and_a_large_jpeg_of_one_frame_get_the_same_perturbation(tmp_path) -> None:
    """blur:2 is sigma 2 in the frame's own pixels on both files (a JPEG drafted to 1/8 got sigma 16), and matches
    the blur applied to the frame itself before the model's resize."""
    from PIL import ImageFilter

    from clipforensics.extract.perturb import parse_perturbations, perturbed_copies

    frame = Image.fromarray(_frame())
    frame.save(tmp_path / "f.png")
    frame.save(tmp_path / "f.jpg", quality=98)
    levels = parse_perturbations(["blur:2", "noise:0.05", "jpeg:50", "resize:0.5"])
    png, jpg = (perturbed_copies(tmp_path / name, levels, 0, 3) for name in ("f.png", "f.jpg"))
    expected = _model_input(frame.filter(ImageFilter.GaussianBlur(2)))
    for level, a, b in zip(levels, png, jpg):
        assert a.size == b.size, level
        assert np.abs(_model_input(a) - _model_input(b)).mean() < 2.0, level
    assert np.abs(_model_input(jpg[0]) - expected).mean() < 1.0
    drafted = _model_input(Image.open(tmp_path / "f.jpg").reduce(8).filter(ImageFilter.GaussianBlur(2)))
    assert np.abs(drafted - expected).mean() > 5 * np.abs(_model_input(jpg[0]) - expected).mean()


def test_the_noise_draw_depends_on_row_kind_and_level_not_on_its_place(tmp_path) -> None:
    from clipforensics.extract.perturb import parse_perturbations, perturbed_copies

    Image.fromarray(_frame(96)).save(tmp_path / "f.png")
    alone = perturbed_copies(tmp_path / "f.png", parse_perturbations(["noise:0.05"]), 0, 7)[0]
    listed = parse_perturbations(["jpeg:90,70", "blur:1,2", "resize:0.5", "noise:0.02,0.05"])
    assert listed[6].name == "noise:0.05"
    seventh = perturbed_copies(tmp_path / "f.png", listed, 0, 7)[6]
    np.testing.assert_array_equal(np.asarray(alone), np.asarray(seventh))
    other_row = perturbed_copies(tmp_path / "f.png", parse_perturbations(["noise:0.05"]), 0, 8)[0]
    assert not np.array_equal(np.asarray(alone), np.asarray(other_row))


def test_parts_left_by_a_kill_after_the_cache_was_installed_are_cleared_by_the_rerun(tmp_path, synthetic_root,
                                                                                       monkeypatch, capsys):
    """A kill between installing the cache and removing its parts leaves a complete cache beside its own parts; the
    rerun finds nothing to do and removes those parts (and a dead run's half-removed parts), never another run's."""
    from clipforensics.core import paths
    from clipforensics.extract.chunks import ChunkStore

    out = tmp_path / "c.h5"
    argv = ["--data-root", str(synthetic_root), "--out", str(out), *TINY, "--chunk-size", "32", "--max-images", "64"]
    with monkeypatch.context() as m:
        m.setattr(ChunkStore, "remove", lambda self: None)  # the kill: the cache is in place, its parts too
        assert extract_features.main(argv) == 0
    parts, made = tmp_path / "c.h5.parts", out.read_bytes()
    assert (parts / "identity.json").is_file()
    dead = tmp_path / f".c.h5.parts.tmp-{paths._host()}-999999999"  # removed part-way by a run that died
    dead.mkdir()
    (dead / "chunk-000000.npz").write_bytes(b"")
    assert extract_features.main(argv) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert not parts.exists() and not dead.exists() and out.read_bytes() == made
    parts.mkdir()
    (parts / "identity.json").write_text('{"model": "another run"}')
    assert extract_features.main(argv) == 0
    assert (parts / "identity.json").read_text() == '{"model": "another run"}'
