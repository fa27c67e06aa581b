"""Train here, test there: heads and the matrix on several caches, each test set reported by its data set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
import extract_features
import finetune_lora
import fit_heads
from clipforensics.data.cache import read_cache
from clipforensics.synthetic.write import generate
from tests.conftest import TINY

LIST = "List_of_testing_videos.txt"


@pytest.fixture(scope="module")
def celebdf_cache(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("celebdf")
    root = generate(base / "Celeb-DF-v2", videos=18, frames=2, size=64, seed=3, style="celebdf")
    out = base / "cdf.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def cross_run(tiny_cache, celebdf_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cross") / "run"
    assert fit_heads.main(["--cache", str(tiny_cache), "--test-cache", str(celebdf_cache), "--heads",
                           "logreg,zeroshot-v2", "--out", str(out)]) == 0
    return out


def test_heads_score_the_official_test_list_of_another_data_set(cross_run, celebdf_cache, tiny_cache) -> None:
    scores = pd.read_csv(cross_run / "logreg" / "scores.csv", keep_default_na=False)
    assert set(scores["dataset"]) == {tiny_cache.stem, "cdf"}
    cdf = scores[scores["dataset"] == "cdf"]
    assert set(cdf["split"]) == {"test"}
    listed = {line.split()[1][:-len(".mp4")] for line in
              (Path(read_cache(celebdf_cache).attrs["data_root"]) / LIST).read_text().split("\n") if line}
    assert set(cdf["video"]) == listed and set(cdf.drop_duplicates("video")["label"]) == {0, 1}
    own = scores[scores["dataset"] == tiny_cache.stem]
    assert set(own["split"]) == {"val", "test"} and not own["video"].str.startswith("Celeb").any()


def test_evaluator_reports_each_data_set_at_the_validation_threshold(cross_run, tiny_cache, tmp_path) -> None:
    files = [str(cross_run / head / "scores.csv") for head in ("logreg", "zeroshot-v2")]
    assert evaluate.main([*files, "--out", str(tmp_path), "--bootstrap", "200"]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert {(p["a"], p["b"]) for p in report["paired"]} == {
        (f"logreg@{name}", f"zeroshot-v2@{name}") for name in (tiny_cache.stem, "cdf")}  # pairs on one test set only
    metrics = report["runs"]
    assert set(metrics) == {f"{head}@{name}" for head in ("logreg", "zeroshot-v2") for name in (tiny_cache.stem, "cdf")}
    assert metrics["logreg@cdf"]["threshold"] == metrics[f"logreg@{tiny_cache.stem}"]["threshold"]
    scores = pd.read_csv(files[0], keep_default_na=False)
    cdf = scores[(scores["dataset"] == "cdf")]
    assert metrics["logreg@cdf"]["test"]["frame"]["auc"] == pytest.approx(roc_auc_score(cdf["label"], cdf["score"]))
    assert "logreg@cdf" in (tmp_path / "metrics.md").read_text()


def test_all_rows_of_a_test_cache(tiny_cache, celebdf_cache, tmp_path) -> None:
    out = tmp_path / "run"
    assert fit_heads.main(["--cache", str(tiny_cache), "--test-cache", str(celebdf_cache), "--test-rows", "all",
                           "--heads", "zeroshot-v2", "--out", str(out)]) == 0
    scores = pd.read_csv(out / "zeroshot-v2" / "scores.csv", keep_default_na=False)
    assert (scores["dataset"] == "cdf").sum() == len(read_cache(celebdf_cache).manifest)


@pytest.mark.parametrize("attribute, value", [("init_seed", 7), ("image_size", 32), ("model", "ViT-B-32")])
def test_caches_of_other_features_are_refused_by_attribute(tiny_cache, celebdf_cache, tmp_path, capsys,
                                                           attribute, value) -> None:
    other = tmp_path / "other.h5"
    shutil.copyfile(celebdf_cache, other)
    with h5py.File(other, "r+") as h5:
        h5.attrs[attribute] = value
    assert fit_heads.main(["--cache", str(tiny_cache), "--test-cache", str(other), "--heads", "zeroshot-v2",
                           "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"({attribute}: " in err and "model, weights and preprocessing" in err
    assert not (tmp_path / "run" / "zeroshot-v2").exists()


def test_test_set_mistakes_are_refused(tiny_cache, celebdf_cache, tmp_path, capsys) -> None:
    run = ["--heads", "zeroshot-v2", "--out", str(tmp_path / "run")]
    twin = tmp_path / "twin" / celebdf_cache.name
    twin.parent.mkdir()
    shutil.copyfile(celebdf_cache, twin)
    cases = [(["--test-cache", str(celebdf_cache), "--test-cache", str(twin)], "both be named 'cdf'"),
             (["--test-cache", str(tiny_cache)], "is the training cache itself")]
    for extra, message in cases:
        assert fit_heads.main(["--cache", str(tiny_cache), *extra, *run]) == 2
        assert message in capsys.readouterr().err
    with h5py.File(twin, "r+") as h5:  # every listed video real: the official test list has one class
        del h5["label"]
        h5.create_dataset("label", data=[0] * len(read_cache(celebdf_cache).manifest), dtype="i1")
    assert fit_heads.main(["--cache", str(tiny_cache), "--test-cache", str(twin), *run]) == 2
    assert "hold no fake videos, so AUC and EER would be undefined" in capsys.readouterr().err


def test_training_on_a_data_set_keeps_its_official_test_list(celebdf_cache, tiny_cache, tmp_path) -> None:
    out = tmp_path / "run"
    assert fit_heads.main(["--cache", str(celebdf_cache), "--train-fakes", "Celeb-synthesis", "--test-fakes",
                           "Celeb-synthesis", "--test-cache", str(tiny_cache), "--heads", "zeroshot-v2",
                           "--out", str(out)]) == 0
    scores = pd.read_csv(out / "zeroshot-v2" / "scores.csv", keep_default_na=False)
    manifest = read_cache(celebdf_cache).manifest
    listed = set(manifest.loc[manifest["official_split"] == "test", "video"])
    own = scores[scores["dataset"] == "cdf"]
    assert set(own.loc[own["split"] == "test", "video"]) == listed
    assert not set(own.loc[own["split"] == "val", "video"]) & listed
    splits = pd.read_csv(out / "splits.csv", keep_default_na=False).set_index("video")["split"]
    assert set(splits[splits == "test"].index) == listed


@pytest.fixture(scope="module")
def multi_matrix(tiny_cache, celebdf_cache, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("multi")
    other = base / "cdfcopy.h5"
    shutil.copyfile(celebdf_cache, other)
    out = base / "matrix"
    assert evaluate.main(["matrix", "--cache", str(tiny_cache), "--train-cache", str(celebdf_cache),
                          "--test-cache", str(other), "--heads", "logreg", "--out", str(out),
                          "--bootstrap", "200"]) == 0
    return out


def test_matrix_over_several_caches(multi_matrix, tiny_cache) -> None:
    matrix = pd.read_csv(multi_matrix / "matrix.csv", keep_default_na=False)
    manips = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]
    assert list(dict.fromkeys(matrix["test"])) == manips + ["cdf", "cdfcopy"]
    assert list(dict.fromkeys(matrix["train"])) == manips + [f"all of {tiny_cache.stem}", "all others", "cdf"]
    grid = matrix.set_index(["train", "test"])
    for row in manips + [f"all of {tiny_cache.stem}", "cdf"]:
        assert all((row, column) in grid.index for column in manips + ["cdf", "cdfcopy"])
    assert not grid.loc[("all others", )].index.isin(["cdf", "cdfcopy"]).any()
    own = matrix[matrix["in_domain"].astype(str) == "True"]
    inside = set(own["train"] + "/" + own["test"])
    assert inside == ({f"{m}/{m}" for m in manips} | {f"all of {tiny_cache.stem}/{m}" for m in manips} | {"cdf/cdf"})
    assert (matrix[["frame_auc_lo", "video_auc_lo"]].apply(pd.to_numeric) <= matrix[["frame_auc", "video_auc"]].to_numpy()
            ).all().all()
    assert (multi_matrix / "matrix_frame_auc.png").stat().st_size > 0
    assert (multi_matrix / "splits" / "cdf" / "splits.csv").is_file()


def test_matrix_cells_of_other_data_sets_are_their_whole_test_sets(multi_matrix, celebdf_cache) -> None:
    """A column of another data set is its official test list in every row, measured by the evaluator."""
    matrix = pd.read_csv(multi_matrix / "matrix.csv", keep_default_na=False).set_index(["train", "test"])
    manifest = read_cache(celebdf_cache).manifest
    listed = set(manifest.loc[manifest["official_split"] == "test", "video"])
    for row, folder in (("FaceSwap", "FaceSwap"), ("cdf", "cdf")):
        scores = pd.read_csv(multi_matrix / "scores" / folder / "scores.csv", keep_default_na=False)
        column = scores[(scores["dataset"] == "cdfcopy")]
        assert set(column["video"]) == listed and set(column["split"]) == {"test"}
        cell = matrix.loc[(row, "cdfcopy")]
        assert float(cell["frame_auc"]) == pytest.approx(roc_auc_score(column["label"], column["score"]))
        assert int(cell["real_videos"]) + int(cell["fake_videos"]) == len(listed)
    cdf_row = pd.read_csv(multi_matrix / "scores" / "cdf" / "scores.csv", keep_default_na=False)
    own_test = cdf_row[(cdf_row["dataset"] == "cdf") & (cdf_row["split"] == "test")]
    assert set(own_test["video"]) == listed


def test_lora_trained_here_is_tested_and_reextracted_there(celebdf_cache, tmp_path_factory) -> None:
    base = tmp_path_factory.mktemp("lora-elsewhere")
    root = generate(base / "other", videos=12, frames=2, size=64, seed=4, manipulations=("FaceSwap",))
    other = base / "other.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(other), *TINY]) == 0
    out = base / "run"
    assert finetune_lora.main(["--base-cache", str(celebdf_cache), "--test-cache", str(other), "--out", str(out),
                               "--cache-out", str(base), "--train-fakes", "Celeb-synthesis", "--test-fakes",
                               "Celeb-synthesis", "--epochs", "1", "--batch-size", "16", "--rank", "4", "--alpha", "8",
                               "--workers", "0"]) == 0
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert set(scores.loc[scores["dataset"] == "other", "video"]) == set(read_cache(other).manifest["video"])
    summary = json.loads((out / "lora.json").read_text())
    lora_other = read_cache(summary["test_set_caches"]["other"])
    assert lora_other.attrs["adapter_sha"] == summary["adapter_sha"]
    assert lora_other.attrs["base_cache"] == str(other.resolve())
    assert lora_other.attrs["manifest_hash"] == read_cache(other).attrs["manifest_hash"]
    assert fit_heads.main(["--cache", summary["lora_cache"], "--test-cache", summary["test_set_caches"]["other"],
                           "--train-fakes", "Celeb-synthesis", "--test-fakes", "Celeb-synthesis", "--heads", "logreg",
                           "--out", str(base / "heads")]) == 0


def test_the_same_videos_in_two_data_sets_are_refused(celebdf_cache, tmp_path, capsys) -> None:
    """A test cache holding the training cache's train or val videos (the same set at another compression)."""
    twin = tmp_path / "twin.h5"
    shutil.copyfile(celebdf_cache, twin)
    run = ["--cache", str(celebdf_cache), "--train-fakes", "Celeb-synthesis", "--test-fakes", "Celeb-synthesis",
           "--test-cache", str(twin), "--heads", "zeroshot-v2"]
    assert fit_heads.main([*run, "--out", str(tmp_path / "official")]) == 0  # its official test list: not trained on
    assert fit_heads.main([*run, "--test-rows", "all", "--out", str(tmp_path / "all")]) == 2
    assert "have the key of a train or val video of the training cache" in capsys.readouterr().err
