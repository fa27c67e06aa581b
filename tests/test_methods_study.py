"""The method comparison (`evaluate.py methods`): tiny runs of three methods on one base cache, measured by the
shared evaluator, their parameters read from lora.json, paired against LoRA; runs of another base cache or protocol
refused naming the fields. Numbers are checked against scikit-learn on the runs' own scores.csv."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate as evaluate_cli
import finetune_lora
from clipforensics.core.errors import UserError
from clipforensics.evaluate.compare import delong
from clipforensics.studies.methods import compare_methods
from clipforensics.studies.settings import MethodsSettings
from test_lora import strong_cache  # noqa: F401  (the module-scoped fixture: a learnable cache)

COMMON = ["--epochs", "2", "--batch-size", "16", "--lr", "3e-3", "--workers", "0", "--max-train-images", "96",
          "--test-fakes", "FaceSwap,NeuralTextures", "--no-extract"]
METHODS = {"lora": ["--rank", "4", "--alpha", "8"], "layernorm": [], "svd": ["--rank", "2"]}


@pytest.fixture(scope="module")
def method_runs(strong_cache, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    folder = tmp_path_factory.mktemp("method-runs")
    runs = {}
    for method, extra in METHODS.items():
        out = folder / f"strong-{method}"
        assert finetune_lora.main(["--base-cache", str(strong_cache), "--out", str(out), "--method", method,
                                   *COMMON, *extra]) == 0
        runs[method] = out
    return runs


@pytest.fixture(scope="module")
def study(method_runs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reports") / "methods"
    assert evaluate_cli.main(["methods", *map(str, method_runs.values()), "--out", str(out), "--bootstrap", "200"]) == 0
    return json.loads((out / "methods.json").read_text()) | {"out": out}


def video_table(run: Path, manipulation: str) -> pd.DataFrame:
    """Test videos of all reals and one manipulation's fakes, each scored by the mean of its frames."""
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    test = scores[(scores.split == "test") & ((scores.label == 0) | (scores.manipulation == manipulation))]
    return test.groupby("video").agg(label=("label", "first"), score=("score", "mean"))


def test_every_method_and_manipulation_gets_the_evaluators_video_auc(study, method_runs):
    cells = {(c["method"], c["manipulation"]): c for c in study["cells"]}
    assert set(cells) == {(m, x) for m in METHODS for x in ("FaceSwap", "NeuralTextures")}
    for (method, manipulation), cell in cells.items():
        videos = video_table(method_runs[method], manipulation)
        assert cell["video_auc"] == pytest.approx(roc_auc_score(videos.label, videos.score), abs=1e-12)
        assert cell["role"] == ("in-domain" if manipulation == "FaceSwap" else "unseen")
        low, high = cell["video_auc_ci"]
        assert low <= cell["video_auc"] <= high


def test_parameters_come_from_each_runs_record(study, method_runs):
    for name, run in study["runs"].items():
        counts = json.loads((method_runs[run["method"]] / "lora.json").read_text())["parameters"]
        assert run["parameters"] == {"method": counts[run["method"]], "head": counts["head"], "tower": counts["tower"],
                                     "share_of_tower": counts["method_share_of_tower"]}
        assert run["parameters"]["method"] > 0


def test_differences_are_paired_against_lora(study, method_runs):
    diffs = study["differences"]
    assert {(d["method"], d["manipulation"]) for d in diffs} == {(m, x) for m in ("layernorm", "svd")
                                                                 for x in ("FaceSwap", "NeuralTextures")}
    for d in diffs:
        run, base = (video_table(method_runs[m], d["manipulation"]) for m in (d["method"], "lora"))
        assert list(run.index) == list(base.index)
        expected = roc_auc_score(run.label, run.score) - roc_auc_score(base.label, base.score)
        assert d["diff"] == pytest.approx(expected, abs=1e-12) and d["baseline"] == "strong-lora"
        assert d["delong"]["p"] == pytest.approx(delong(run.label, run.score, base.score)["p"], abs=1e-12)
        low, high = d["diff_ci"]
        assert low <= high


def test_compare_to_names_the_reference_run_by_its_name(method_runs, tmp_path):
    out = tmp_path / "by-name"
    assert evaluate_cli.main(["methods", *map(str, method_runs.values()), "--out", str(out), "--bootstrap", "0",
                              "--compare-to", "strong-svd"]) == 0
    diffs = json.loads((out / "methods.json").read_text())["differences"]
    assert {d["method"] for d in diffs} == {"lora", "layernorm"} and {d["baseline"] for d in diffs} == {"strong-svd"}
    for d in diffs:
        run, base = (video_table(method_runs[m], d["manipulation"]) for m in (d["method"], "svd"))
        expected = roc_auc_score(run.label, run.score) - roc_auc_score(base.label, base.score)
        assert d["diff"] == pytest.approx(expected, abs=1e-12)
    assert "Δ video AUC vs strong-svd" in (out / "methods.md").read_text()


def test_the_report_files_show_methods_parameters_and_differences(study):
    md = (study["out"] / "methods.md").read_text()
    assert "unseen NeuralTextures: video AUC [95% CI]" in md and "Δ video AUC vs lora" in md
    assert all(f"strong-{m}" in md for m in METHODS)
    assert (study["out"] / "report.html").is_file() and (study["out"] / "methods.csv").is_file()


def test_runs_of_another_base_cache_or_protocol_are_refused_naming_the_fields(method_runs, tmp_path):
    other = tmp_path / "strong-svd-other"
    shutil.copytree(method_runs["svd"], other)
    record = json.loads((other / "lora.json").read_text())
    record["protocol"]["train_fakes"] = ["NeuralTextures"]
    record["base"]["manifest_hash"] = "0123456789abcdef"
    (other / "lora.json").write_text(json.dumps(record))
    with pytest.raises(UserError) as refused:
        compare_methods([str(method_runs["lora"]), str(other)], MethodsSettings(out=str(tmp_path / "r"), bootstrap=0))
    message = str(refused.value)
    assert "base.manifest_hash" in message and "protocol.train_fakes" in message and "\n" not in message


def test_a_comparison_without_the_baseline_or_of_a_head_is_refused(method_runs, tmp_path):
    settings = MethodsSettings(out=str(tmp_path / "r"), bootstrap=0)
    with pytest.raises(UserError, match="--compare-to lora: no run of that name or method"):
        compare_methods([str(method_runs["svd"]), str(method_runs["layernorm"])], settings)
    head = tmp_path / "head"
    head.mkdir()
    (head / "head.json").write_text("{}")
    with pytest.raises(UserError):
        compare_methods([str(head)], MethodsSettings(out=str(tmp_path / "r2"), bootstrap=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head"]  # a refused comparison leaves no report folder
