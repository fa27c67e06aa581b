"""The demo's reading of the table: verdicts and the drop follow the numbers and their intervals."""

from __future__ import annotations

import json

import pytest

from clipforensics.report import reading


def cell(auc: float, lo: float | None, hi: float | None) -> dict:
    return {"video": {"auc": auc, "auc_ci": None if lo is None else [lo, hi]},
            "frame": {"auc": auc, "auc_ci": None if lo is None else [lo, hi]}}


def metrics(cells: dict[str, dict], train=("FaceSwap",)) -> dict:
    return {"runs": {"lora": {"source": {"protocol": {"train_fakes": list(train), "test_fakes": list(cells)}},
                              "per_manipulation": cells, "test": cell(0.6, 0.5, 0.7)}}}


def test_in_domain_above_chance_and_a_drop_the_intervals_show() -> None:
    lines = reading.reading(metrics({"FaceSwap": cell(0.86, 0.71, 0.96), "NeuralTextures": cell(0.47, 0.28, 0.66),
                                     "Deepfakes": cell(0.55, 0.36, 0.74)}))
    assert lines[1] == "lora (trained on FaceSwap):"
    assert "in-domain FaceSwap" in lines[2] and "0.86 [0.71, 0.96]" in lines[2] and lines[2].endswith("above chance")
    assert "unseen NeuralTextures" in lines[3] and lines[3].endswith("not distinguishable from chance")
    assert lines[-1].strip().startswith("0.86 in-domain -> 0.51 unseen (-0.35)")
    assert "show the drop for NeuralTextures; for Deepfakes they overlap" in lines[-1]


@pytest.mark.parametrize("unseen, expected", [
    (cell(0.30, 0.20, 0.45), "below chance"),
    (cell(0.80, 0.65, 0.92), "above chance"),
    (cell(0.55, None, None), "no interval (bootstrap off)"),
])
def test_chance_verdict_follows_the_interval(unseen: dict, expected: str) -> None:
    lines = reading.reading(metrics({"FaceSwap": cell(0.9, 0.8, 0.97), "NeuralTextures": unseen}))
    assert lines[3].endswith(expected)


def test_every_unseen_interval_below_and_all_overlapping() -> None:
    apart = reading.reading(metrics({"FaceSwap": cell(0.9, 0.8, 0.97), "NeuralTextures": cell(0.5, 0.3, 0.7)}))
    assert apart[-1].endswith("lies above every unseen interval, so the drop is real")
    overlap = reading.reading(metrics({"FaceSwap": cell(0.7, 0.5, 0.85), "NeuralTextures": cell(0.6, 0.4, 0.8)}))
    assert overlap[-1].endswith("the intervals overlap, so this many test videos cannot show a drop")


def test_single_test_manipulation_and_no_protocol() -> None:
    one = {"runs": {"r": {"source": {"protocol": {"train_fakes": ["FaceSwap"], "test_fakes": ["NeuralTextures"]}},
                          "per_manipulation": {}, "test": cell(0.55, 0.4, 0.7)}}}
    lines = reading.reading(one)
    assert "unseen NeuralTextures" in lines[2] and len(lines) == 3
    assert "no per-manipulation results" in reading.reading({"runs": {"x": {"test": cell(0.5, 0.4, 0.6)}}})[1]


def test_command_line(tmp_path, capsys) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics({"FaceSwap": cell(0.9, 0.8, 0.97), "NeuralTextures": cell(0.5, 0.3, 0.7)})))
    assert reading.main([str(path), "--runs", "lora"]) == 0
    assert "lora (trained on FaceSwap):" in capsys.readouterr().out
    assert reading.main([str(path), "--runs", "nope"]) == 2
    assert "no run(s) nope" in capsys.readouterr().err
    assert reading.main([str(tmp_path / "missing.json")]) == 2


# ---------------------------------------------------------------- what the backbone saw (issue 22, item 1)

def lora_cache_metrics(train=("Deepfakes",), here=True, name="logreg", scorer="head", test_sets=()) -> dict:
    """A head fitted on a LoRA cache whose tower was tuned on FaceSwap, as metrics.json records it."""
    cells = {"FaceSwap": cell(0.41, 0.30, 0.52), "Deepfakes": cell(0.9, 0.8, 0.97),
             "NeuralTextures": cell(0.5, 0.3, 0.7)}
    source = {"scorer": scorer, "name": name.split("@")[0], "cache": "/c/lora.h5",
              "protocol": {"train_fakes": list(train), "test_fakes": list(cells)},
              "test_sets": [{"name": t} for t in test_sets]}
    tuned = {"manipulations": ["FaceSwap"], "run": "runs/x", "here": here}
    return {"provenance": {"caches": [{"path": "/c/lora.h5", "tuned_on": tuned}]},
            "runs": {name: {"source": source, "per_manipulation": cells, "test": cell(0.6, 0.5, 0.7)}}}


def test_a_manipulation_the_backbone_was_tuned_on_is_never_unseen() -> None:
    lines = reading.reading(lora_cache_metrics())
    text = "\n".join(lines)
    assert "unseen FaceSwap" not in text
    assert lines[1] == "logreg (trained on Deepfakes; backbone tuned on FaceSwap (LoRA run runs/x)):"
    assert any(line.strip().startswith("backbone-seen FaceSwap") for line in lines)
    drop = next(line for line in lines if "in-domain ->" in line)
    assert drop.strip().startswith("0.90 in-domain -> 0.50 unseen (-0.40)"), "FaceSwap (0.41) left out of unseen"
    assert lines[-1].strip().startswith("backbone-seen: backbone tuned on FaceSwap")


def test_head_trained_on_what_the_tower_saw_and_lora_scorer_read_as_before() -> None:
    same = reading.reading(lora_cache_metrics(train=("FaceSwap",)))
    assert same[1] == "logreg (trained on FaceSwap):" and "unseen NeuralTextures" in "\n".join(same)
    lora = lora_cache_metrics(train=("FaceSwap",), scorer="lora", name="lora")
    lora["provenance"] = {}
    assert reading.reading(lora)[1] == "lora (trained on FaceSwap):"


def test_another_data_set_is_unseen_only_where_the_tuning_ran_on_the_runs_own() -> None:
    """A result on another data set (run@other): the tower tuned on the run's own data set did not see it; a
    tower tuned elsewhere may have, so nothing it trained on is called unseen there."""
    own = reading.reading(lora_cache_metrics(name="logreg@other", test_sets=("other",)))
    assert "unseen FaceSwap" in "\n".join(own)
    elsewhere = reading.reading(lora_cache_metrics(name="logreg@other", here=False, test_sets=("other",)))
    assert "unseen FaceSwap" not in "\n".join(elsewhere) and "(of this data set or another)" in elsewhere[1]
    lora = lora_cache_metrics(train=("FaceSwap",), scorer="lora", name="lora@other", test_sets=("other",))
    assert "unseen FaceSwap" in "\n".join(reading.reading(lora))
    assert set(reading.run_towers(lora_cache_metrics())) == {"logreg"}
