"""Issue 11, tracebacks where one line is promised: full disks, read-only folders, bad files and options.

Each case: the exact exit code, one `error:` line on stderr, and the files as they should be afterwards.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evaluate
import extract_features
import finetune_lora
import fit_heads
import prepare_frames
from clipforensics.core.errors import UserError
from clipforensics.core.io import claim_output
from clipforensics.data import cache as cache_mod
from clipforensics.data.cache import read_cache
from clipforensics.extract import chunks
from clipforensics.heads.heads import Features, video_auc
from conftest import TINY
from reliability.helpers import one_line_error, tree

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
LORA_FAST = ["--epochs", "1", "--batch-size", "16", "--rank", "4", "--alpha", "8", "--workers", "0",
             "--max-train-images", "48", "--no-extract", "--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures"]


def extract(root, out, *extra) -> int:
    return extract_features.main(["--data-root", str(root), "--out", str(out), *TINY, "--prompt-sets", "v1", *extra])


# ---------------------------------------------------------------- full disk


def test_disk_full_while_saving_a_chunk_keeps_finished_chunks(synthetic_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "c.h5"
    saved, real_savez = [], np.savez

    def savez(file, **arrays):
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        saved.append(file)
        real_savez(file, **arrays)

    monkeypatch.setattr(chunks.np, "savez", savez)
    assert extract(synthetic_root, out, "--max-images", "64", "--chunk-size", "16") == 2
    line = one_line_error(capsys)
    assert "No space left on device" in line and "save chunk 2" in line and "finished work is kept" in line
    parts = tmp_path / "c.h5.parts"
    assert sorted(p.name for p in parts.glob("chunk-*")) == ["chunk-000000.npz", "chunk-000001.npz"]
    assert not [p for p in parts.iterdir() if ".tmp-" in p.name] and not out.exists()
    monkeypatch.setattr(chunks.np, "savez", real_savez)
    assert extract(synthetic_root, out, "--max-images", "64", "--chunk-size", "16") == 0
    assert "resuming: 2 of 4 chunks already done" in capsys.readouterr().err
    assert len(read_cache(out).embeddings) == 64


def test_disk_full_while_writing_the_cache_leaves_the_parts(synthetic_root, tmp_path, capsys, monkeypatch):
    def no_space(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return open(path, mode, *args, **kwargs)

    out = tmp_path / "c.h5"
    monkeypatch.setattr(cache_mod, "open", no_space, raising=False)
    assert extract(synthetic_root, out, "--max-images", "32", "--chunk-size", "16") == 2
    assert "cannot write the cache" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5.parts"]
    monkeypatch.undo()
    assert extract(synthetic_root, out, "--max-images", "32", "--chunk-size", "16") == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount); skipped where it cannot be had."""
    point = tmp_path / "disk"
    point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_real_full_disk_never_crashes_the_cache_writer(tiny_disk):
    """HDF5 segfaults when the disk fills mid-write; the cache is composed in memory, written by Python."""
    code = ("import sys, numpy as np, pandas as pd\n"
            "from clipforensics.data.cache import write_cache\n"
            "n = 4000\n"
            "m = pd.DataFrame({'path': [f'Real_youtube/{i}/0.png' for i in range(n)], 'label': 0,\n"
            "                  'manipulation': 'Real_youtube', 'video': [str(i) for i in range(n)], 'target': '',"
            " 'source': ''})\n"
            "try:\n"
            "    write_cache(sys.argv[1], embeddings=np.ones((n, 64)), manifest=m, attrs={}, prompts={},\n"
            "                failed=pd.DataFrame({'path': [], 'reason': []}))\n"
            "except OSError as exc:\n"
            "    print('ENOSPC' if exc.errno == 28 else exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tiny_disk / "c.h5")], cwd=ROOT, capture_output=True,
                          text=True, env=ENV)
    assert done.returncode == 0 and done.stdout.strip() == "ENOSPC", done.stderr[-500:]
    assert os.listdir(tiny_disk) == []


# ---------------------------------------------------------------- read-only output folders, before any work


@pytest.fixture
def readonly(tmp_path):
    """A folder nobody may write into: a read-only tmpfs for root (permissions do not stop root), else 0555."""
    point = tmp_path / "ro"
    point.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(point)],
                          capture_output=True).returncode != 0:
            pytest.skip("root without mount: a read-only folder cannot be made")
        yield point
        subprocess.run(["umount", "-l", str(point)], check=False)
    else:
        point.chmod(0o555)
        yield point
        point.chmod(0o755)


def test_read_only_outputs_are_refused_before_any_work(readonly, tiny_cache, synthetic_root, tmp_path, capsys):
    import cv2

    video = tmp_path / "videos" / "Real_youtube" / "000.avi"
    video.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    started = time.perf_counter()
    commands = [
        (extract_features, ["--data-root", str(synthetic_root), "--out", str(readonly / "c.h5"), *TINY]),
        (fit_heads, ["--cache", str(tiny_cache), "--out", str(readonly / "run")]),
        (evaluate, ["matrix", "--cache", str(tiny_cache), "--out", str(readonly / "matrix")]),
        (finetune_lora, ["--base-cache", str(tiny_cache), "--out", str(readonly / "lora"), *LORA_FAST]),
        (prepare_frames, ["--videos-root", str(video.parent.parent), "--out", str(readonly / "frames")]),
    ]
    for module, argv in commands:
        assert module.main(argv) == 2, module.__name__
        err = capsys.readouterr().err
        assert "RANDOM WEIGHTS" not in err and "LoRA" not in err  # refused before a model was built
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert lines[-1].startswith("error:"), lines
        assert "Read-only file system" in lines[-1] or "Permission denied" in lines[-1], lines
    assert os.listdir(readonly) == []
    assert time.perf_counter() - started < 120


# ---------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    from clipforensics.extract.encoders import load_model
    from clipforensics.extract.settings import ModelSettings

    folder = tmp_path_factory.mktemp("weights")
    good = folder / "good.pt"
    torch.save(load_model(ModelSettings(model="tiny-vit", pretrained="none")).model.state_dict(), good)
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "empty.pt").write_bytes(b"")
    torch.save({"foreign": torch.zeros(3)}, folder / "foreign.pt")
    (folder / "a-folder.pt").mkdir()
    return folder


@pytest.mark.parametrize("name, words", [("truncated.pt", "cannot load checkpoint"),
                                         ("empty.pt", "cannot load checkpoint"),
                                         ("foreign.pt", "weights of another model"),
                                         ("a-folder.pt", "is a folder, not a checkpoint file")])
def test_bad_weight_files_are_one_line_errors(name, words, weights, synthetic_root, tmp_path, capsys):
    argv = ["--data-root", str(synthetic_root), "--out", str(tmp_path / "c.h5"), "--model", "tiny-vit",
            "--pretrained", str(weights / name), "--workers", "0", "--max-images", "8"]
    assert extract_features.main(argv) == 2
    assert words in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def lora_folder_with(tmp_path: Path, content: bytes) -> Path:
    run = claim_output(tmp_path / "run", stage="finetune_lora")
    run.own("checkpoint.pt")
    (run.path / "checkpoint.pt").write_bytes(content)
    return run.path


@pytest.mark.slow
def test_an_empty_checkpoint_is_refused_then_replaced_with_overwrite(tiny_cache, tmp_path, capsys):
    out = lora_folder_with(tmp_path, b"")
    (out / "notes.txt").write_text("mine")
    argv = ["--base-cache", str(tiny_cache), "--out", str(out), *LORA_FAST]
    assert finetune_lora.main(argv) == 2
    assert "checkpoint.pt is not a readable checkpoint" in one_line_error(capsys)
    assert (out / "checkpoint.pt").read_bytes() == b""
    assert finetune_lora.main([*argv, "--overwrite"]) == 0
    assert (out / "checkpoint.pt").stat().st_size > 0 and (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_training_frame_unreadable_after_extraction(tiny_cache, synthetic_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(synthetic_root, root, copy_function=shutil.copy2)
    from clipforensics.data.protocol import ProtocolSettings, assign_splits

    rows = assign_splits(read_cache(tiny_cache).manifest, ProtocolSettings(train_fakes=("FaceSwap",),
                                                                          test_fakes=("NeuralTextures",)))
    victim = root / rows.loc[(rows.split == "train") & (rows.label == 1), "path"].iloc[0]
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)  # same size and time: the cheap fingerprint cannot see it
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    argv = ["--base-cache", str(tiny_cache), "--out", str(tmp_path / "run"), "--data-root", str(root), *LORA_FAST,
            "--max-train-images", "100000"]
    assert finetune_lora.main(argv) == 2
    assert f"training frame {victim} cannot be read any more" in one_line_error(capsys)


def test_frames_changed_since_the_base_cache_are_refused_before_training(tiny_cache, synthetic_root, tmp_path,
                                                                          capsys):
    root = tmp_path / "root"
    shutil.copytree(synthetic_root, root, copy_function=shutil.copy2)
    victim = sorted((root / "FaceSwap").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    argv = ["--base-cache", str(tiny_cache), "--out", str(tmp_path / "run"), "--data-root", str(root), *LORA_FAST]
    assert finetune_lora.main(argv) == 2
    line = one_line_error(capsys)
    assert "1 of" in line and "changed since the base cache" in line and "RANDOM" not in capsys.readouterr().err


def test_a_directory_is_not_reported_as_not_found(tmp_path, capsys):
    (tmp_path / "c.h5").mkdir()
    assert fit_heads.main(["--cache", str(tmp_path / "c.h5"), "--out", str(tmp_path / "r")]) == 2
    assert "is a folder, not a cache file" in one_line_error(capsys)
    (tmp_path / "scores.csv").mkdir()
    assert evaluate.main([str(tmp_path / "scores.csv"), "--out", str(tmp_path / "e")]) == 2
    assert "is a folder, not a scores file" in one_line_error(capsys)


def test_a_one_class_validation_split_is_called_validation():
    feats = Features(np.zeros((4, 2), np.float32), np.zeros(4, int), np.array(["a", "a", "b", "b"]))
    with pytest.raises(UserError, match="validation set has only real rows"):
        video_auc(feats, np.full(4, 0.5))


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("module, argv, words", [
    (extract_features, ["--device", "bogus"], "unknown --device 'bogus'"),
    (extract_features, ["--device", "mps"], "is not supported"),
    (extract_features, ["--batch-size", "0"], "must be positive"),
    (extract_features, ["--max-images", "-5"], "--max-images must be at least 1"),
    (fit_heads, ["--heads", ""], "--heads names no head"),
    (fit_heads, ["--frames-per-video", "0"], "frames per video must be at least 1"),
    (evaluate, ["--bootstrap", "-5"], "--bootstrap must be 0 (no intervals) or at least 100"),
    (evaluate, ["--bootstrap", "1"], "--bootstrap must be 0 (no intervals) or at least 100"),
    (evaluate, ["matrix", "--train-fakes", "Bogus"], "--train-fakes / --test-fakes do not apply"),
    (finetune_lora, ["--warmup", "5"], "--warmup a share of the steps in [0, 1)"),
    (finetune_lora, ["--device", "cuda:7"], "--device"),
    (prepare_frames, ["--workers", "-5"], "--workers must be 0 (in the main process) or more"),
])
def test_absurd_options_are_one_line_errors(module, argv, words, tiny_cache, synthetic_root, tmp_path, capsys):
    out = tmp_path / "out"
    base = {extract_features: ["--data-root", str(synthetic_root), "--out", str(out / "c.h5"), *TINY],
            fit_heads: ["--cache", str(tiny_cache), "--out", str(out)],
            evaluate: ["--out", str(out), "--predictions", str(tmp_path / "p.csv")],
            finetune_lora: ["--base-cache", str(tiny_cache), "--out", str(out), *LORA_FAST],
            prepare_frames: ["--videos-root", str(synthetic_root), "--out", str(out)]}[module]
    pd.DataFrame({"path": ["Real_youtube/000/0.png", "FaceSwap/001_000/0.png"], "label": [0, 1],
                  "score": [0.2, 0.8]}).to_csv(tmp_path / "p.csv", index=False)
    if argv[0] == "matrix":
        base = ["matrix", "--cache", str(tiny_cache), "--out", str(out)]
        argv = argv[1:]
    assert module.main([*base, *argv]) == 2
    assert words in one_line_error(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- Ctrl-C


SCRIPTS = ("prepare_frames.py", "extract_features.py", "fit_heads.py", "finetune_lora.py", "evaluate.py", "detect.py")


def test_every_script_quiets_ctrl_c_before_its_imports():
    for script in SCRIPTS:
        text = (ROOT / script).read_text()
        assert text.index("quiet_interrupts()") < text.index("\nimport argparse"), script


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "fit_heads.py"), "--cache", str(tmp_path / "c.h5"), "--out",
                             str(tmp_path / "r")], env=ENV, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)  # inside the imports of torch / sklearn
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert "Traceback" not in err and err.strip().splitlines()[-1] in ("interrupted", f"error: cache not found: "
                                                                                     f"{tmp_path / 'c.h5'}")
    assert proc.returncode in (-signal.SIGINT, 130, 2)
