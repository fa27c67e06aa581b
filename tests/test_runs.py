"""clipforensics.runs: one registry of run kinds that detect.py and the studies open run folders through."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from clipforensics.core.errors import UserError
from clipforensics.frames.crops import CropRecipe
from clipforensics.lora.checkpoint import save_head_tensors
from clipforensics.core.paths import sha256_file
from clipforensics.lora.model import LinearHead
from clipforensics.runs.kinds import RUN_KINDS, open_run, runs_in
from clipforensics.extract.tower import model_settings

PACKAGE = Path(__file__).resolve().parent.parent / "clipforensics"
REAL = [0.1, 0.2, 0.3, 0.6]
FAKE = [0.4, 0.7, 0.8, 0.9]


def scores_table(folder: Path) -> None:
    rows = [{"path": f"v{i}/0.png", "label": label, "score": s, "split": "val", "video": f"v{i}",
             "manipulation": "FaceSwap" if label else "real"}
            for i, (label, s) in enumerate([(0, s) for s in REAL] + [(1, s) for s in FAKE])]
    pd.DataFrame(rows).to_csv(folder / "scores.csv", index=False)


def head_run(folder: Path, rng: np.random.Generator) -> Pipeline:
    folder.mkdir(parents=True)
    X, y = rng.normal(size=(40, 8)), np.arange(40) % 2
    head = Pipeline([("logreg", LogisticRegression())]).fit(X, y)
    joblib.dump(head, folder / "model.joblib")
    (folder / "head.json").write_text(json.dumps({"name": folder.name, "cache": "c.h5", "protocol":
                                                  {"frames_per_video": 3},
                                                  "model_sha256": sha256_file(folder / "model.joblib")}))
    scores_table(folder)
    return head


def lora_run(folder: Path) -> LinearHead:
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    head = LinearHead(8)
    save_head_tensors(head, folder / "head.safetensors", {"head": "linear"})
    (folder / "lora.json").write_text(json.dumps({"adapter_sha": "ab" * 32, "base": {"cache": "c.h5"},
                                                  "head_sha": sha256_file(folder / "head.safetensors"),
                                                  "lora_cache": None, "best_epoch": 2}))
    scores_table(folder)
    return head


def test_both_kinds_are_opened_through_one_registry(tmp_path):
    rng = np.random.default_rng(0)
    head_run(tmp_path / "run" / "logreg", rng)
    head_run(tmp_path / "run" / "ridge", rng)
    lora_run(tmp_path / "lora")
    assert set(RUN_KINDS.names()) == {"head", "lora"}
    assert open_run(tmp_path / "run" / "logreg").kind_name == "head"
    assert open_run(tmp_path / "lora").kind_name == "lora"
    found = runs_in(tmp_path / "run")
    assert [r.label for r in found] == ["run/logreg", "run/ridge"] and found[0].frames_per_video == 3
    assert [r.label for r in runs_in(tmp_path / "lora")] == ["lora"]
    with pytest.raises(UserError, match=r"holds fitted heads \(logreg, ridge\): pass one of them"):
        open_run(tmp_path / "run")
    with pytest.raises(UserError, match="not a fitted head folder"):
        runs_in(tmp_path)


def test_threshold_is_the_eer_of_the_validation_rows(tmp_path):
    head_run(tmp_path / "h", np.random.default_rng(0))
    threshold, note = open_run(tmp_path / "h").threshold()
    labels, scores = np.array([0] * 4 + [1] * 4), np.array(REAL + FAKE)
    # independent: the score at which the false-positive and false-negative rates (fake if score >= t) meet
    gaps = {t: abs(np.mean(scores[labels == 0] >= t) - np.mean(scores[labels == 1] < t)) for t in scores}
    assert threshold == pytest.approx(min(gaps, key=gaps.get)) == pytest.approx(0.6)
    assert note.endswith("of the run")


def test_scorers_are_the_saved_heads(tmp_path):
    rng = np.random.default_rng(1)
    head = head_run(tmp_path / "h", rng)
    tensors = lora_run(tmp_path / "l")
    X = rng.normal(size=(16, 8)).astype(np.float32)
    expected = head.predict_proba(X.astype(np.float16).astype(np.float32))[:, 1]
    assert np.allclose(open_run(tmp_path / "h").scorer()(X), expected)
    logits = tensors(torch.from_numpy(X)).detach().numpy().astype(np.float64)
    softmax = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    assert np.allclose(open_run(tmp_path / "l").scorer()(X), softmax, atol=1e-6)


def test_incomplete_or_damaged_runs_are_one_line(tmp_path):
    lora_run(tmp_path / "l")
    (tmp_path / "l" / "head.safetensors").unlink()
    with pytest.raises(UserError, match="missing head.safetensors; rerun finetune_lora.py"):
        runs_in(tmp_path / "l")
    head_run(tmp_path / "h", np.random.default_rng(0))
    (tmp_path / "h" / "head.json").write_text(json.dumps({"name": "h"}))
    with pytest.raises(UserError, match=r"is not a run record \(no 'cache'\); refit"):
        open_run(tmp_path / "h")
    with pytest.raises(UserError, match="does not exist"):
        open_run(tmp_path / "nope")
    with pytest.raises(UserError, match="--no-extract"):
        open_run(tmp_path / "l").scored_cache()


def test_crop_recipe_is_read_from_the_prepare_record():
    record = {"detector": "haar", "margin": 1.3, "size": 48, "frames": 3, "detect_max_side": 640,
              "align": "five-point", "landmarks": ["5", "68"], "layout": "ffpp"}
    recipe = CropRecipe.from_record(record, "prepare.json")
    assert recipe == CropRecipe("haar", 640, "five-point", "68", 1.3, 48, 3, "prepare.json")
    assert recipe.describe() == "haar faces, margin 1.3, 48 px, 3 frames a video, align five-point (from prepare.json)"
    assert recipe.landmark_models() == ("5", "68")
    with pytest.raises(UserError, match="does not record the face-crop settings"):
        CropRecipe.from_record({k: v for k, v in record.items() if k != "frames"}, "prepare.json")
    with pytest.raises(UserError, match="which this installation does not have"):
        CropRecipe.from_record({**record, "detector": "no-such"}, "prepare.json")


def test_model_settings_come_from_the_cache_attributes():
    attrs = {"model": "tiny-vit", "pretrained": "none", "init_seed": 7,
             "settings": {"model": {"model": "other", "pretrained": "x", "init_seed": 0, "weights_dir": "w"}}}
    settings = model_settings(attrs)
    assert (settings.model, settings.pretrained, settings.init_seed, settings.weights_dir) == ("tiny-vit", "none", 7,
                                                                                              "w")
    assert model_settings(attrs, pretrained="merged.safetensors").pretrained == "merged.safetensors"
    with pytest.raises(UserError, match="records no model settings"):
        model_settings({**attrs, "settings": {}})


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_only_the_fine_tuning_stage_reaches_its_orchestrator_and_runs_sits_below_readers():
    outside = [p for p in PACKAGE.rglob("*.py") if p.parent.name != "lora"
               and "clipforensics.lora.stage" in imports(p)]
    assert outside == []
    above = ("clipforensics.detect", "clipforensics.evaluate", "clipforensics.studies", "clipforensics.lora.stage",
             "clipforensics.report")
    for path in (PACKAGE / "runs").glob("*.py"):
        assert not [m for m in imports(path) if m.startswith(above)], path
    assert not [m for m in imports(PACKAGE / "lora" / "stage.py") if m.startswith("clipforensics.report")]
