"""Cross-AUC in the matrix: reals of one test data set against fakes of another, and all test sets pooled."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
import extract_features
from clipforensics.synthetic.write import generate
from tests.conftest import TINY


@pytest.fixture(scope="module")
def matrix(tiny_cache, tmp_path_factory) -> Path:
    """The FF-style cache as the primary data set, the generated Celeb-DF style as the other test set."""
    base = tmp_path_factory.mktemp("crossauc")
    root = generate(base / "Celeb-DF-v2", videos=18, frames=2, size=64, seed=3, style="celebdf")
    assert extract_features.main(["--data-root", str(root), "--out", str(base / "cdf.h5"), *TINY]) == 0
    out = base / "matrix"
    assert evaluate.main(["matrix", "--cache", str(tiny_cache), "--test-cache", str(base / "cdf.h5"), "--heads",
                          "logreg", "--out", str(out), "--bootstrap", "200"]) == 0
    return out


def test_cross_auc_is_the_auc_of_one_sets_reals_against_anothers_fakes(matrix: Path, tiny_cache: Path) -> None:
    cross = pd.read_csv(matrix / "cross_auc.csv", keep_default_na=False)
    own = tiny_cache.stem
    scores = pd.read_csv(matrix / "scores" / "FaceSwap" / "scores.csv", keep_default_na=False)
    test = scores[scores["split"] == "test"]
    row = cross[cross["train"] == "FaceSwap"].set_index(["reals", "fakes"])
    assert set(row.index) == {(own, own), (own, "cdf"), ("cdf", own), ("cdf", "cdf"), ("all", "all")}
    for reals, fakes in row.index:
        part = test if reals == "all" else pd.concat([test[(test["dataset"] == reals) & (test["label"] == 0)],
                                                      test[(test["dataset"] == fakes) & (test["label"] == 1)]])
        assert float(row.loc[(reals, fakes), "frame_auc"]) == pytest.approx(roc_auc_score(part["label"], part["score"]))
        cell = row.loc[(reals, fakes)]
        assert float(cell["video_auc_lo"]) <= float(cell["video_auc"]) <= float(cell["video_auc_hi"])
        assert int(cell["real_videos"]) == part.loc[part["label"] == 0, ["dataset", "video"]].drop_duplicates().shape[0]
    assert len(test) == len(test.drop_duplicates(["dataset", "path"]))
    pooled = json.loads((matrix / "matrix.json").read_text())["cross_auc"]
    assert {(c["train"], c["reals"], c["fakes"]) for c in pooled} == set(zip(cross["train"], cross["reals"],
                                                                              cross["fakes"]))
    assert "all others" not in set(cross["train"])  # tested on its own data set only


def test_the_diagonal_is_each_data_sets_own_auc(matrix: Path, tiny_cache: Path) -> None:
    cross = pd.read_csv(matrix / "cross_auc.csv", keep_default_na=False).set_index(["train", "reals", "fakes"])
    cells = pd.read_csv(matrix / "matrix.csv", keep_default_na=False).set_index(["train", "test"])
    assert float(cross.loc[("FaceSwap", "cdf", "cdf"), "frame_auc"]) == pytest.approx(
        float(cells.loc[("FaceSwap", "cdf"), "frame_auc"]))
