"""evaluate.py: the one evaluator, its guards, external predictions, and the cross-manipulation matrix."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
import fit_heads
from clipforensics.core.commands import parse_command
from clipforensics.measure.metrics import bootstrap_replicates, video_scores

MATRIX_BOOT = 200
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
    assert evaluate.main([*files, "--out", str(out), "--bootstrap", "200", "--print"]) == 0
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


@pytest.fixture(scope="module")
def matrix_out(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix")
    assert evaluate.main(["matrix", "--cache", str(tiny_cache), "--heads", "logreg", "--out", str(out),
                          "--bootstrap", str(MATRIX_BOOT)]) == 0
    return out


def test_matrix_on_the_generated_set(matrix_out):
    out = matrix_out
    matrix = pd.read_csv(out / "matrix.csv")
    manips = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]
    single = matrix[matrix.train.isin(manips)]
    assert sorted(single.test.unique()) == manips and len(single) == 16
    assert len(matrix[matrix.train == "all others"]) == 4
    every = matrix[matrix.train.str.startswith("all of ")]
    assert sorted(every.test) == manips and every.in_domain.all()
    assert set(single.loc[single.in_domain, "train"] + "/" + single.loc[single.in_domain, "test"]) == {
        f"{m}/{m}" for m in manips}
    assert matrix[["frame_auc", "video_auc"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (out / "matrix_frame_auc.png").stat().st_size > 0 and (out / "matrix_video_auc.png").exists()


def _weighted_auc_ci(table: pd.DataFrame, max_fpr: float | None = None) -> tuple[float, float]:
    """95% interval of sklearn's weighted AUC (partial up to `max_fpr`) over the evaluator's video draws
    (same seed, same order)."""
    labels, scores, videos = table.label.to_numpy(), table.score.to_numpy(), table.video.to_numpy()
    draws = bootstrap_replicates(labels, scores, videos, n_boot=MATRIX_BOOT, seed=0).counts
    codes = pd.factorize(videos)[0]
    aucs = [roc_auc_score(labels, scores, sample_weight=draws[i, codes], max_fpr=max_fpr) for i in range(MATRIX_BOOT)]
    lo, hi = np.quantile(aucs, [0.025, 0.975])
    return lo, hi


@pytest.mark.parametrize("train, test", [("FaceSwap", "FaceSwap"), ("FaceSwap", "NeuralTextures"),
                                         ("all others", "Deepfakes")])
def test_matrix_cells_carry_bootstrap_intervals(matrix_out, train, test):
    cell = pd.read_csv(matrix_out / "matrix.csv").set_index(["train", "test"]).loc[(train, test)]
    folder = train if train != "all others" else f"all-but-{test}"
    scores = pd.read_csv(matrix_out / "scores" / folder / "scores.csv", keep_default_na=False)
    rows = scores[scores.split == "test"]
    if train != "all others":  # a cell of a row tested on several manipulations: all reals, then these fakes
        rows = pd.concat([rows[rows.label == 0], rows[(rows.label == 1) & (rows.manipulation == test)]])
    assert set(rows.loc[rows.label == 1, "manipulation"]) == {test}
    videos = rows.groupby("video", sort=True).agg(label=("label", "first"), score=("score", "mean")).reset_index()
    for level, table in (("frame", rows), ("video", videos)):
        assert cell[f"{level}_auc"] == pytest.approx(roc_auc_score(table.label, table.score))
        lo, hi = _weighted_auc_ci(table)
        assert (cell[f"{level}_auc_lo"], cell[f"{level}_auc_hi"]) == pytest.approx((lo, hi))
        assert lo < cell[f"{level}_auc"] < hi
    assert (cell.real_videos, cell.fake_videos) == ((videos.label == 0).sum(), (videos.label == 1).sum())


def test_matrix_cells_and_report_carry_the_partial_auc(matrix_out, runs, tmp_path):
    cell = pd.read_csv(matrix_out / "matrix.csv").set_index(["train", "test"]).loc[("FaceSwap", "FaceSwap")]
    scores = pd.read_csv(matrix_out / "scores" / "FaceSwap" / "scores.csv", keep_default_na=False)
    rows = scores[scores.split == "test"]
    rows = pd.concat([rows[rows.label == 0], rows[(rows.label == 1) & (rows.manipulation == "FaceSwap")]])
    videos = rows.groupby("video", sort=True).agg(label=("label", "first"), score=("score", "mean")).reset_index()
    for level, table in (("frame", rows), ("video", videos)):
        assert cell[f"{level}_pauc01"] == pytest.approx(roc_auc_score(table.label, table.score, max_fpr=0.1))
        lo, hi = _weighted_auc_ci(table, max_fpr=0.1)
        assert (cell[f"{level}_pauc01_lo"], cell[f"{level}_pauc01_hi"]) == pytest.approx((lo, hi))
    out = tmp_path / "report"
    assert evaluate.main([str(runs / "logreg" / "scores.csv"), "--out", str(out), "--bootstrap", "100"]) == 0
    run = json.loads((out / "metrics.json").read_text())["runs"]["logreg"]
    test = pd.read_csv(runs / "logreg" / "scores.csv", keep_default_na=False).query("split == 'test'")
    assert run["test"]["frame"]["pauc01"] == pytest.approx(roc_auc_score(test.label, test.score, max_fpr=0.1))
    assert run["test"]["video"]["pauc01_ci"] is not None
    assert "video pAUC@0.1 [95% CI]" in (out / "metrics.md").read_text()


def test_report_is_the_implicit_command():
    implicit = parse_command(evaluate.COMMANDS, "report", ["a.csv", "--out", "x"])
    explicit = parse_command(evaluate.COMMANDS, "report", ["report", "a.csv", "--out", "x"])
    assert implicit[0] is explicit[0] is evaluate.COMMANDS["report"]
    assert vars(implicit[1]) == vars(explicit[1]) and implicit[1].scores == ["a.csv"]
    command, ns = parse_command(evaluate.COMMANDS, "report", ["matrix", "--cache", "c.h5", "--out", "o"])
    assert command is evaluate.COMMANDS["matrix"] and (ns.cache, ns.bootstrap) == ("c.h5", 1000)


def test_tables_printed_only_on_request(runs, tmp_path, capsys):
    files = [str(runs / "logreg" / "scores.csv"), str(runs / "zeroshot-v2" / "scores.csv")]
    assert evaluate.main([*files, "--out", str(tmp_path / "report"), "--bootstrap", "100"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"report: {tmp_path / 'report' / 'report.html'}"]
    notes = [line for line in captured.err.splitlines() if "intervals are wide" in line]
    assert len(notes) <= 2 and all("logreg, zeroshot-v2:" in line for line in notes)
