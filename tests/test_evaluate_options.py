"""evaluate.py's options after the renames of issue 23 (one meaning per option name): each old name answers with
its new name (exit 2), and the new names reach the computation. Numbers are checked against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
from clipforensics.core.commands import parse_command
from clipforensics.core.settings import from_namespace
from clipforensics.evaluate.settings import EvaluateSettings
from clipforensics.measure.metrics import bootstrap_replicates
from clipforensics.studies.settings import MatrixSettings, MethodsSettings

FRAMES = 3
BOOT = 100


@pytest.mark.parametrize("argv, old, new", [
    (["a.csv", "--out", "o", "--seed", "1"], "--seed", "--bootstrap-seed"),
    (["report", "a.csv", "--out", "o", "--frames-per-video", "1,2"], "--frames-per-video", "--frame-budgets"),
    (["matrix", "--cache", "c.h5", "--out", "o", "--seed=1"], "--seed", "--bootstrap-seed"),
    (["matrix", "--cache", "c.h5", "--out", "o", "--head", "svm"], "--head", "--heads"),
    (["robustness", "r", "--out", "o", "--seed", "1"], "--seed", "--bootstrap-seed"),
    (["methods", "r", "--out", "o", "--seed", "1"], "--seed", "--bootstrap-seed"),
    (["methods", "r", "--out", "o", "--baseline", "dora"], "--baseline", "--compare-to"),
])
def test_an_old_option_name_answers_with_its_new_name(argv, old, new, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        evaluate.main(argv)
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {old} is now {new}")


def test_the_new_names_parse_into_the_settings() -> None:
    _, ns = parse_command(evaluate.COMMANDS, "report", ["a.csv", "--out", "o", "--bootstrap-seed", "7",
                                                        "--frame-budgets", "1,all"])
    report = from_namespace(EvaluateSettings, ns)
    assert (report.bootstrap_seed, report.frame_budgets) == (7, ("1", "all"))
    _, ns = parse_command(evaluate.COMMANDS, "report", ["matrix", "--cache", "c.h5", "--out", "o", "--heads", "svm",
                                                        "--frames-per-video", "2"])
    assert from_namespace(MatrixSettings, ns).head == "svm"
    assert ns.frames_per_video == 2  # in the matrix --frames-per-video keeps its one meaning: at most N per video
    _, ns = parse_command(evaluate.COMMANDS, "report", ["methods", "r", "--out", "o", "--compare-to", "strong-svd"])
    assert from_namespace(MethodsSettings, ns).compare_to == "strong-svd"


@pytest.mark.parametrize("heads", ["logreg,svm", "all", ""])
def test_the_matrix_takes_exactly_one_head(heads, tmp_path, capsys) -> None:
    out = tmp_path / "matrix"
    assert evaluate.main(["matrix", "--cache", str(tmp_path / "c.h5"), "--out", str(out), "--heads", heads]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluate.py matrix fits exactly one head") and "\n" not in err
    assert not out.exists()


def test_a_name_of_no_registered_aggregator_is_refused_with_the_closest(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        evaluate.main([str(tmp_path / "a.csv"), "--out", str(tmp_path / "r"), "--video-agg", "meen"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "argument --video-agg: invalid choice: 'meen' (choose from 'mean', 'median', 'max'); did you mean 'mean' or "
        "'median'?")


@pytest.fixture
def scores_file(tmp_path):
    """A scores table of 12 real and 12 fake test videos (3 frames each) and a few validation videos."""
    rng = np.random.default_rng(5)
    rows = []
    for split, n in (("val", 4), ("test", 12)):
        for label, cls in ((0, "Real_youtube"), (1, "FaceSwap")):
            for v in range(n):
                video = f"{cls}/{split}{v:02d}" + ("_99" if label else "")
                for f in range(FRAMES):
                    rows.append((f"{video}/{f:03d}.png", video, cls, label, split,
                                 float(rng.uniform(0.2, 1.0) if label else rng.uniform(0.0, 0.8))))
    path = tmp_path / "s.csv"
    pd.DataFrame(rows, columns=["path", "video", "manipulation", "label", "split", "score"]).to_csv(path, index=False)
    return path


def _weighted_auc_ci(table: pd.DataFrame, seed: int) -> tuple[float, float]:
    """95% interval of scikit-learn's weighted AUC over the video resamples that `seed` draws."""
    labels, scores, videos = table.label.to_numpy(), table.score.to_numpy(), table.video.to_numpy()
    draws = bootstrap_replicates(labels, scores, videos, n_boot=BOOT, seed=seed).counts
    codes = pd.factorize(videos)[0]
    aucs = [roc_auc_score(labels, scores, sample_weight=draws[i, codes]) for i in range(BOOT)]
    lo, hi = np.quantile(aucs, [0.025, 0.975])
    return lo, hi


def test_the_bootstrap_seed_draws_the_intervals(scores_file, tmp_path) -> None:
    test = pd.read_csv(scores_file, keep_default_na=False).query("split == 'test'")
    intervals = []
    for seed in (7, 8):
        out = tmp_path / f"r{seed}"
        assert evaluate.main([str(scores_file), "--out", str(out), "--bootstrap", str(BOOT),
                              "--bootstrap-seed", str(seed)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        frame = metrics["runs"]["s"]["test"]["frame"]
        assert frame["auc_ci"] == pytest.approx(_weighted_auc_ci(test, seed))
        assert metrics["settings"]["bootstrap_seed"] == seed
        intervals.append(frame["auc_ci"])
    assert intervals[0] != intervals[1]


def test_frame_budgets_give_video_auc_from_that_many_frames(scores_file, tmp_path) -> None:
    out = tmp_path / "r"
    assert evaluate.main([str(scores_file), "--out", str(out), "--bootstrap", "0", "--frame-budgets", "all,1"]) == 0
    curve = {row["frames"]: row for row in json.loads((out / "metrics.json").read_text())["frames_per_video"]["s"]}
    test = pd.read_csv(scores_file, keep_default_na=False).query("split == 'test'")
    middle = test[test.path.str.endswith(f"/{FRAMES // 2:03d}.png")]  # one frame per video: the middle one
    for budget, rows in ((1, middle), ("all", test)):
        videos = rows.groupby("video").agg(label=("label", "first"), score=("score", "mean"))
        assert curve[budget]["video_auc"] == pytest.approx(roc_auc_score(videos.label, videos.score))
        assert curve[budget]["frames_used"] == len(rows)
