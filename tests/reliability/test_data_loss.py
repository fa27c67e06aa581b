"""Issue 11, data loss: a stage owns only what it wrote; --overwrite never reaches anything else."""

from __future__ import annotations

import json
import shutil

import h5py

import extract_features
import fit_heads
from clipforensics.core.errors import UserError
from clipforensics.core.io import RECORD
from conftest import TINY
from reliability.helpers import one_line_error, tree

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures"]


def heads(cache, out, *extra, names: str = "ridge,zeroshot-v2") -> int:
    return fit_heads.main(["--cache", str(cache), "--out", str(out), "--heads", names, *PROTOCOL, *extra])


def test_fit_heads_refuses_a_folder_it_did_not_write_even_with_overwrite(tiny_cache, tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "other-run" / "logreg").mkdir(parents=True)
    (runs / "other-run" / "logreg" / "scores.csv").write_text("someone's result")
    (runs / "notes.txt").write_text("my notes")
    before = tree(runs)
    for extra in ([], ["--overwrite"]):
        assert heads(tiny_cache, runs, *extra) == 2
        assert "is not empty (notes.txt, other-run) and was not written by fit_heads" in one_line_error(capsys)
        assert tree(runs) == before


def test_fit_heads_overwrite_replaces_only_its_own_files(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert heads(tiny_cache, run) == 0
    (run / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert heads(tiny_cache, run, "--real-split", "60/20/20") == 2
    assert "another cache or protocol" in one_line_error(capsys)
    assert heads(tiny_cache, run, "--real-split", "60/20/20", "--overwrite", names="ridge") == 0
    assert sorted(p.name for p in run.iterdir()) == sorted([RECORD, "notes.txt", "ridge", "run.json", "splits.csv"])
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "run.json").read_text())["protocol"]["real_split"] == "60/20/20"


def test_fit_heads_refuses_an_out_that_holds_its_cache(tiny_cache, tmp_path, capsys):
    cache = tmp_path / "cache" / "c.h5"
    cache.parent.mkdir()
    shutil.copy(tiny_cache, cache)
    assert heads(cache, cache.parent, "--overwrite") == 2
    assert "contains the input --cache" in one_line_error(capsys)
    assert cache.read_bytes() == tiny_cache.read_bytes()


def test_a_failed_start_leaves_no_run_that_blocks_the_next_valid_one(tiny_cache, tmp_path, capsys, monkeypatch):
    from clipforensics.heads import fit

    def fails(*args, **kwargs):
        raise UserError("this head cannot be fitted")

    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(fit, "fit_head", fails)
        assert heads(tiny_cache, run) == 2
    assert "cannot be fitted" in one_line_error(capsys)
    assert json.loads((run / "run.json").read_text())["finished"] == []
    assert heads(tiny_cache, run, "--real-split", "60/20/20") == 0
    assert json.loads((run / "run.json").read_text())["finished"] == ["ridge", "zeroshot-v2"]


def test_extraction_out_must_be_a_cache_name_so_the_sidecar_cannot_be_the_cache(synthetic_root, tmp_path, capsys):
    out = tmp_path / "NAME.json"
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(out), *TINY]) == 2
    assert "must end in .h5 or .hdf5" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_extraction_sidecar_sits_beside_the_cache_under_its_full_name(tiny_cache):
    side = tiny_cache.with_name(tiny_cache.name + ".json")
    assert json.loads(side.read_text())["manifest_hash"] == h5py.File(tiny_cache).attrs["manifest_hash"]


def test_extraction_never_replaces_a_file_that_is_not_a_cache(synthetic_root, tmp_path, capsys):
    out = tmp_path / "thesis.h5"
    out.write_bytes(b"a user's own HDF5 file, or anything else")
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(out), *TINY, "--overwrite"]) == 2
    assert "refusing to replace it" in one_line_error(capsys)
    assert out.read_bytes() == b"a user's own HDF5 file, or anything else"


def test_extraction_out_that_is_a_folder_or_inside_the_data_root(synthetic_root, tmp_path, capsys):
    (tmp_path / "c.h5").mkdir()
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(tmp_path / "c.h5"), *TINY]) == 2
    assert "is a folder; name a file such as" in one_line_error(capsys)
    inside = synthetic_root / "c.h5"
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(inside), *TINY]) == 2
    assert "is inside the input --data-root" in one_line_error(capsys)
    assert not inside.exists()


# ---------------------------------------------------------------- the LoRA stage


LORA_FAST = ["--epochs", "1", "--batch-size", "16", "--rank", "4", "--alpha", "8", "--workers", "0",
             "--max-train-images", "64", "--no-extract", "--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures"]


def test_lora_overwrite_into_the_cache_folder_deletes_nothing(tiny_cache, tmp_path, capsys):
    """Issue 11 case 1: --out was the folder of the base cache, an earlier LoRA cache and the user's notes."""
    import finetune_lora

    folder = tmp_path / "cache"
    folder.mkdir()
    base = folder / "base.h5"
    shutil.copy(tiny_cache, base)
    (folder / "base-lora-0123456789.h5").write_bytes(b"an earlier LoRA cache")
    (folder / "notes.txt").write_text("mine")
    before = tree(folder)
    for out in (folder, tmp_path):
        assert finetune_lora.main(["--base-cache", str(base), "--out", str(out), *LORA_FAST, "--overwrite"]) == 2
        assert "contains the input --base-cache" in one_line_error(capsys)
    assert tree(folder) == before


# ---------------------------------------------------------------- the synthetic generator


def test_the_generator_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    from clipforensics.synthetic.__main__ import main as synthetic

    args = ["--videos", "2", "--frames-per-video", "1", "--size", "48", "--manipulations", "FaceSwap"]
    data = tmp_path / "data"
    data.mkdir()
    (data / "thesis.tex").write_text("years of work")
    assert synthetic(["--out", str(data), *args, "--overwrite"]) == 2
    assert "is not empty (thesis.tex) and was not written by synthetic" in one_line_error(capsys)
    ours = tmp_path / "ours"
    assert synthetic(["--out", str(ours), *args]) == 0
    (ours / "notes.txt").write_text("mine")
    assert synthetic(["--out", str(ours), *args, "--overwrite"]) == 2
    assert "holds files the generator did not write (notes.txt)" in one_line_error(capsys)
    (ours / "notes.txt").unlink()
    assert synthetic(["--out", str(ours), *args, "--data-seed", "3", "--overwrite"]) == 0
    assert (data / "thesis.tex").read_text() == "years of work"
