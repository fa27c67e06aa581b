"""Identity checks reach past the cache: every file a run loads is the one it wrote (sha256 recorded when written),
a report's cache is the one its scores were made from, and a split file's absent names are said."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import pandas as pd
import pytest
import torch

import fit_heads

from clipforensics.core.errors import UserError
from clipforensics.data.protocol import ProtocolSettings, log_splits, make_splits
from clipforensics.data.scores import read_settings
from clipforensics.data.splitfile import write_split_table
from clipforensics.lora.checkpoint import save_head_tensors
from clipforensics.lora.model import LinearHead
from clipforensics.runs.kinds import open_run


PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def heads(tiny_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("identity") / "run"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg,svm", "--out", str(out), *PROTOCOL]) == 0
    return out


def test_fit_heads_records_the_model_files_sha256(heads):
    for name in ("logreg", "svm"):
        record = json.loads((heads / name / "head.json").read_text())
        assert record["model_sha256"] == digest(heads / name / "model.joblib")


def test_a_model_copied_from_another_head_is_refused(heads, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(heads, run)
    open_run(run / "logreg").scorer()  # as written: accepted
    shutil.copyfile(run / "svm" / "model.joblib", run / "logreg" / "model.joblib")
    with pytest.raises(UserError) as err:
        open_run(run / "logreg").scorer()
    message = str(err.value)
    assert "model.joblib" in message and "\n" not in message
    assert digest(heads / "svm" / "model.joblib")[:12] in message
    assert digest(heads / "logreg" / "model.joblib")[:12] in message


def test_a_head_saved_before_hashes_is_refused_with_a_request_to_refit(heads, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(heads / "logreg", run)
    record = json.loads((run / "head.json").read_text())
    del record["model_sha256"]
    (run / "head.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="records no sha256 of model.joblib.*refit"):
        open_run(run).scorer()


def lora_run(folder: Path, seed: int, record_hash: bool = True) -> None:
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    save_head_tensors(LinearHead(8), folder / "head.safetensors", {"head": "linear"})
    record = {"adapter_sha": "ab" * 32, "base": {"cache": "c.h5"}, "lora_cache": None}
    if record_hash:
        record["head_sha"] = digest(folder / "head.safetensors")
    (folder / "lora.json").write_text(json.dumps(record))


def test_a_lora_head_copied_from_another_run_is_refused(tmp_path):
    lora_run(tmp_path / "a", 0)
    lora_run(tmp_path / "b", 1)
    open_run(tmp_path / "a").scorer()
    shutil.copyfile(tmp_path / "b" / "head.safetensors", tmp_path / "a" / "head.safetensors")
    with pytest.raises(UserError, match=r"head.safetensors is not the file its run wrote") as err:
        open_run(tmp_path / "a").scorer()
    assert digest(tmp_path / "b" / "head.safetensors")[:12] in str(err.value)
    lora_run(tmp_path / "old", 0, record_hash=False)
    with pytest.raises(UserError, match="records no sha256 of head.safetensors.*rerun finetune_lora.py"):
        open_run(tmp_path / "old").scorer()


def test_scores_of_a_cache_extracted_again_are_refused(tmp_path):
    cache = tmp_path / "c.h5"
    with h5py.File(cache, "w") as h5:
        h5.attrs["model"], h5.attrs["init_seed"], h5.attrs["manifest_hash"] = "tiny", 1, "m"
        h5.attrs["schema_version"], h5["image_embeddings"] = 1, [[0.0]]  # what read_attrs asks of a cache
    (tmp_path / "scores.csv").write_text("path,score,label\n")
    meta = {"scorer": "head", "cache": str(cache), "cache_identity": {"model": "tiny", "init_seed": 0,
                                                                       "manifest_hash": "m"}}
    (tmp_path / "scores.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"not the one these scores were made from.*init_seed: 0 != 1"):
        read_settings(tmp_path / "scores.csv")
    meta["cache_identity"]["init_seed"] = 1
    (tmp_path / "scores.json").write_text(json.dumps(meta))
    assert read_settings(tmp_path / "scores.csv") == meta


def test_a_split_file_naming_absent_videos_is_said(tmp_path, capsys):
    rows = [(f"{cls}/{v}/0.png", label, cls, f"{cls}/{v}", v, "") for v in ("000", "001", "002", "003")
            for cls, label in (("Real_youtube", 0), ("FaceSwap", 1))]
    manifest = pd.DataFrame(rows, columns=["path", "label", "manipulation", "video", "target", "source"])
    table = pd.DataFrame({"video": [f"{c}/{v}" for v in ("000", "001", "002", "003", "098", "099")
                                    for c in ("Real_youtube", "FaceSwap")],
                          "class": ["Real_youtube", "FaceSwap"] * 6, "group": "g",
                          "split": ["train"] * 4 + ["val"] * 2 + ["test"] * 2 + ["test"] * 4})
    path = write_split_table(tmp_path, table)
    splits = make_splits(manifest, ProtocolSettings(split_file=str(path), train_fakes=("FaceSwap",),
                                                    test_fakes=("FaceSwap",)))
    assert splits.absent.startswith(f"note: 4 of 12 videos in {path} are not in the data (first: FaceSwap/098, ")
    log_splits(splits)
    assert splits.absent in capsys.readouterr().err.splitlines()
    full = make_splits(manifest, ProtocolSettings(split_file=str(write_split_table(tmp_path, table.iloc[:8])),
                                                  train_fakes=("FaceSwap",), test_fakes=("FaceSwap",)))
    assert full.absent == ""
