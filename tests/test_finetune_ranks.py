"""finetune_lora.py under torchrun: the training curve, like every file of the run folder, is rank 0's alone."""

from __future__ import annotations

import pytest

import finetune_lora
from clipforensics.lora import stage
from clipforensics.report import training


@pytest.mark.parametrize("rank, drawn", [("0", True), ("1", False)])
def test_only_rank_0_draws_the_training_curve(rank, drawn, tmp_path, monkeypatch):
    calls = []
    summary = {"settings": {"out": str(tmp_path)}, "best_epoch": 1}
    # finetune_lora.py imports the stage after parsing (--help stays light): patched where it is imported from
    monkeypatch.setattr(stage, "finetune", lambda *args: summary)
    monkeypatch.setattr(stage, "summary_text", lambda s: "done")
    monkeypatch.setattr(training, "training_curve", lambda *args: calls.append(args))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    assert finetune_lora.main(["--base-cache", "-", "--out", str(tmp_path)]) == 0
    assert bool(calls) == drawn
