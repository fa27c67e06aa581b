"""Studies above the stages: the layer sweep's numbers are the evaluator's, and the layering holds (studies
import no stage orchestrator, stages render nothing)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import extract_features
import fit_heads
import clipforensics
from clipforensics.measure.metrics import bootstrap_ci
from conftest import TINY

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]
PACKAGE = Path(clipforensics.__file__).parent


@pytest.fixture(scope="module")
def layered(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("studies") / "layers.h5"
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(out), *TINY, "--max-images", "160",
                                  "--precision", "fp32", "--layers", "all"]) == 0
    return out


def by_hand(rows: pd.DataFrame) -> dict[str, float]:
    """Frame AUC, and video AUC of per-video mean scores, with scikit-learn."""
    videos = rows.groupby("video").agg(label=("label", "first"), score=("score", "mean"))
    return {"frame_auc": roc_auc_score(rows["label"], rows["score"]),
            "video_auc": roc_auc_score(videos["label"], videos["score"])}


@pytest.mark.parametrize("layer", ["0", "final"])
def test_sweep_numbers_are_those_of_the_scores_a_fit_of_that_layer_writes(layered, tmp_path, layer):
    sweep_dir, run_dir = tmp_path / "sweep", tmp_path / "run"
    assert fit_heads.main(["--cache", str(layered), "--heads", "logreg", "--layer-sweep", "--out", str(sweep_dir),
                           *PROTOCOL]) == 0
    one_layer = [] if layer == "final" else ["--layer", layer]
    assert fit_heads.main(["--cache", str(layered), "--heads", "logreg", "--out", str(run_dir), *one_layer,
                           *PROTOCOL]) == 0
    record = next(r for r in json.loads((sweep_dir / "layer_sweep.json").read_text())["rows"]
                  if r["layer"] == layer and r["head"] == "logreg")
    scores = pd.read_csv(run_dir / "logreg" / "scores.csv")
    val = by_hand(scores[scores["split"] == "val"])
    assert record["val_frame_auc"] == pytest.approx(val["frame_auc"], abs=1e-12)
    assert record["val_video_auc"] == pytest.approx(val["video_auc"], abs=1e-12)
    test = scores[scores["split"] == "test"]
    real = test[test["label"] == 0]
    sets = {"all": test, **{m: pd.concat([real, test[test["manipulation"] == m]])
                            for m in ("Deepfakes", "NeuralTextures")}}
    assert set(record["test"]) == set(sets)
    for name, rows in sets.items():
        measured = record["test"][name]
        expected = by_hand(rows)
        assert measured["frame_auc"] == pytest.approx(expected["frame_auc"], abs=1e-12)
        assert measured["video_auc"] == pytest.approx(expected["video_auc"], abs=1e-12)
        videos = rows.groupby("video", sort=True).agg(label=("label", "first"), score=("score", "mean")).reset_index()
        ci = bootstrap_ci(videos["label"], videos["score"], videos["video"], n_boot=1000, seed=0)["auc"]
        np.testing.assert_allclose(measured["video_auc_ci"], ci, atol=1e-12)


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Every clipforensics module each module of `folder` imports (top level or inside functions)."""
    found = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        found[str(path.relative_to(PACKAGE))] = {n for n in names if n.startswith("clipforensics.")}
    return found


def test_stages_render_nothing_and_studies_import_no_stage_orchestrator():
    for stage in ("heads", "lora"):
        for module, names in imported_modules(stage).items():
            assert not [n for n in names if n.startswith(("clipforensics.report", "clipforensics.studies"))], module
    for module, names in imported_modules("studies").items():
        assert not names & {"clipforensics.heads.fit", "clipforensics.lora.stage"}, module
    assert (PACKAGE / "studies" / "matrix.py").is_file() and not (PACKAGE / "evaluate" / "matrix.py").exists()
