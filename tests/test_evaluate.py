"""evaluate.py: the one evaluator, its guards, external predictions, and the cross-manipulation matrix."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
import fit_heads
from clipforensics.evaluate.metrics import video_scores

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-runs") / "tiny"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg,zeroshot-v2", "--out", str(out),
                           *PROTOCOL]) == 0
    return out


def test_report_from_two_heads(runs, tmp_path, capsys):
    out = tmp_path / "report"
    files = [str(runs / "logreg" / "scores.csv"), str(runs / "zeroshot-v2" / "scores.csv")]
    assert evaluate.main([*files, "--out", str(out), "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]) == {"logreg", "zeroshot-v2"}
    scores = pd.read_csv(files[0], keep_default_na=False)
    test = scores[scores.split == "test"]
    run = metrics["runs"]["logreg"]
    assert run["test"]["frame"]["auc"] == pytest.approx(roc_auc_score(test.label, test.score))
    videos = test.groupby("video").agg(label=("label", "first"), score=("score", "mean"))
    assert run["test"]["video"]["auc"] == pytest.approx(roc_auc_score(videos.label, videos.score))
    lo, hi = run["test"]["frame"]["auc_ci"]
    assert lo <= run["test"]["frame"]["auc"] <= hi
    assert set(run["per_manipulation"]) == {"NeuralTextures", "Deepfakes"}
    assert f"{run['test']['frame']['auc']:.3f}" in printed and "report.html" in printed
    for name in ("metrics.md", "roc_frame.png", "roc_video.png", "confusion_logreg.png", "errors_logreg.csv",
                 "errors_logreg.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 6


def test_threshold_comes_from_validation_rows_only(runs, tmp_path):
    scores = pd.read_csv(runs / "logreg" / "scores.csv", keep_default_na=False)
    flipped = scores.copy()
    test = flipped.split == "test"
    flipped.loc[test, "score"] = 1 - flipped.loc[test, "score"]
    thresholds = []
    for i, table in enumerate((scores, flipped)):
        path = tmp_path / f"s{i}.csv"
        table.to_csv(path, index=False)
        evaluate.main([str(path), "--out", str(tmp_path / f"r{i}"), "--bootstrap", "0"])
        thresholds.append(json.loads((tmp_path / f"r{i}" / "metrics.json").read_text())["runs"][f"s{i}"]["threshold"])
    assert thresholds[0] == thresholds[1]


def test_external_predictions_with_windows_paths(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for cls, label in (("Real_youtube", 0), ("NeuralTextures", 1)):
        for v in range(6):
            video = f"{v:03d}" if label == 0 else f"{v:03d}_{v + 1:03d}"
            for f in range(3):
                records.append({"path": f"C:\\data\\{cls}\\{video}\\{f:03d}.png", "label": label,
                                "score": float(rng.uniform(0.3, 1.0) if label else rng.uniform(0.0, 0.7))})
    pred = tmp_path / "other.json"
    pred.write_text(json.dumps(records))
    out = tmp_path / "r"
    assert evaluate.main(["--predictions", str(pred), "--out", str(out), "--bootstrap", "100"]) == 0
    run = json.loads((out / "metrics.json").read_text())["runs"]["other"]
    assert run["test"]["video"]["n"] == 12 and run["test"]["frame"]["n_videos"] == 12
    df = pd.DataFrame(records)
    df["video"] = df.path.str.rsplit("\\", n=2).str[0]
    v = video_scores(df.assign(manipulation="", split="test"), "mean")
    assert run["test"]["video"]["auc"] == pytest.approx(roc_auc_score(v.label, v.score))
    assert "no validation rows" in run["threshold_note"]


def _write(tmp_path, rows, name="s.csv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["path", "video", "manipulation", "label", "split", "score"]).to_csv(path, index=False)
    return str(path)


def test_one_class_test_set_is_an_error(tmp_path, capsys):
    rows = [(f"NeuralTextures/00{i}_01/0.png", f"NeuralTextures/00{i}_01", "NeuralTextures", 1, "test", 0.3 * i)
            for i in range(3)]
    assert evaluate.main([_write(tmp_path, rows), "--out", str(tmp_path / "r")]) == 2
    assert "only fake" in capsys.readouterr().err


def test_video_in_train_and_test_is_an_error(tmp_path, capsys):
    rows = [("Real_youtube/001/0.png", "Real_youtube/001", "Real_youtube", 0, "train", 0.1),
            ("Real_youtube/001/1.png", "Real_youtube/001", "Real_youtube", 0, "test", 0.2),
            ("FaceSwap/002_003/0.png", "FaceSwap/002_003", "FaceSwap", 1, "test", 0.9)]
    assert evaluate.main([_write(tmp_path, rows), "--out", str(tmp_path / "r")]) == 2
    assert "leaks" in capsys.readouterr().err


def test_runs_on_different_test_sets_are_refused(runs, tmp_path, capsys):
    scores = pd.read_csv(runs / "logreg" / "scores.csv", keep_default_na=False)
    fewer = _write(tmp_path, scores.iloc[: len(scores) // 2 + 5].values.tolist(), "fewer.csv")
    assert evaluate.main([str(runs / "logreg" / "scores.csv"), fewer, "--out", str(tmp_path / "r")]) == 2
    assert "different test sets" in capsys.readouterr().err


def test_matrix_on_the_generated_set(tiny_cache, tmp_path):
    out = tmp_path / "matrix"
    assert evaluate.main(["matrix", "--cache", str(tiny_cache), "--head", "logreg", "--out", str(out)]) == 0
    matrix = pd.read_csv(out / "matrix.csv")
    manips = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]
    single = matrix[matrix.train != "all others"]
    assert sorted(single.train.unique()) == manips and sorted(single.test.unique()) == manips
    assert len(single) == 16 and len(matrix[matrix.train == "all others"]) == 4
    assert matrix[["frame_auc", "video_auc"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (out / "matrix_frame_auc.png").stat().st_size > 0 and (out / "matrix_video_auc.png").exists()
