"""Class: a report folder silently replaced by a report of other inputs (evaluate.py, evaluate.py robustness)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import evaluate
from clipforensics.core.errors import UserError
from clipforensics.core.io import claim_output, write_json
from clipforensics.studies.robustness import claim_robustness
from clipforensics.studies.settings import RobustnessSettings
from reliability.helpers import one_line_error, tree


def predictions(path, seed: int) -> str:
    """An external predictions file: 8 real and 8 fake videos of 2 frames, val and test."""
    rng = np.random.default_rng(seed)
    rows = [{"path": f"{cls}/{v:03d}/{f}.png", "score": float(rng.random()), "label": int(cls != "Real_youtube"),
             "split": "val" if v < 4 else "test"}
            for cls in ("Real_youtube", "FaceSwap") for v in range(8) for f in range(2)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


@pytest.fixture()
def report(tmp_path, capsys):
    files = [predictions(tmp_path / f"run{i}.csv", i) for i in range(3)]
    out = tmp_path / "report"
    assert evaluate.main(["--predictions", *files, "--out", str(out), "--bootstrap", "0"]) == 0
    capsys.readouterr()
    return out, files


def test_a_report_of_other_scores_files_is_refused_naming_its_runs(report, capsys):
    out, files = report
    before = tree(out)
    assert evaluate.main(["--predictions", files[0], "--out", str(out), "--bootstrap", "0"]) == 2
    line = one_line_error(capsys)
    assert "the report of run0, run1, run2" in line and "--overwrite" in line
    assert tree(out) == before


def test_overwrite_replaces_it_and_the_same_inputs_rerun_freely(report, capsys):
    out, files = report
    assert evaluate.main(["--predictions", *files, "--out", str(out), "--bootstrap", "0", "--video-agg", "max"]) == 0
    assert evaluate.main(["--predictions", files[0], "--out", str(out), "--bootstrap", "0", "--overwrite"]) == 0
    assert set(json.loads((out / "metrics.json").read_text())["runs"]) == {"run0"}
    assert not (out / "confusion_run1.png").exists()


def test_a_robustness_report_of_other_runs_is_refused(tmp_path):
    folder = claim_output(tmp_path / "r", stage="robustness")
    folder.own("robustness.json")
    write_json(tmp_path / "r" / "robustness.json", {"runs": {"a": {}}, "inputs": {"runs": ["/elsewhere/a"]}})
    del folder
    with pytest.raises(UserError, match=r"the robustness report of a\) was made with other runs"):
        claim_robustness([str(tmp_path / "b")], RobustnessSettings(out=str(tmp_path / "r")))
    assert claim_robustness([str(tmp_path / "b")], RobustnessSettings(out=str(tmp_path / "r"), overwrite=True))
