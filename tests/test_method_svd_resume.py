"""Resuming an svd run (`finetune_lora.py --method svd`): the checkpoint keeps the method's fixed tensors (the initial
residual U0, S0, V0 attach computed), so a run killed after an epoch and resumed equals the uninterrupted run even
where the resumed process's SVD would not round the same (another LAPACK, other threads)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import finetune_lora
from clipforensics.lora import stage
from clipforensics.lora.methods.svd import Residual
from conftest import kill_at_first_checkpoint
from test_lora import strong_cache  # noqa: F401  (the module-scoped fixture: a learnable cache)

SVD = ["--method", "svd", "--rank", "2", "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--workers", "0",
       "--no-extract"]
METRICS = ["epoch", "loss", "val_frame_auc", "val_video_auc"]


def finetune(base: Path, out: Path) -> int:
    return finetune_lora.main(["--base-cache", str(base), "--out", str(out), *SVD])


@pytest.fixture(scope="module")
def svd_run(strong_cache, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("runs") / "strong-svd"
    assert finetune(strong_cache, out) == 0
    return out


def assert_same_run(resumed: Path, reference: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(resumed / "train_log.csv")[METRICS],
                                  pd.read_csv(reference / "train_log.csv")[METRICS])
    assert (resumed / "method.safetensors").read_bytes() == (reference / "method.safetensors").read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(resumed / "scores.csv"), pd.read_csv(reference / "scores.csv"))


def test_the_checkpoint_keeps_the_initial_residual(svd_run):
    saved = torch.load(svd_run / "checkpoint.pt", weights_only=True)
    fixed = saved["fixed"]
    assert fixed and {key.rsplit(".", 1)[1] for key in fixed} == {"U0", "S0", "V0"}
    assert not set(fixed) & {key.removeprefix("adapted.") for key in saved["trainable"]}


def test_a_resume_restores_the_fixed_tensors_instead_of_recomputing_them(svd_run, strong_cache, tmp_path,
                                                                          monkeypatch):  # noqa: F811
    out, original = tmp_path / "resumed", stage.save_checkpoint

    def crash_after_epoch_1(run, optim, state):
        original(run, optim, state)
        if state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(stage, "save_checkpoint", crash_after_epoch_1)
    assert finetune(strong_cache, out) == 130
    monkeypatch.setattr(stage, "save_checkpoint", original)
    decompose = Residual.decompose

    def other_rounding(self: Residual, weight: torch.Tensor) -> None:
        """The SVD as another LAPACK might round it: the initial residual a little off (model still exact)."""
        decompose(self, weight)
        with torch.no_grad():
            for trained, fixed in ((self.S, self.S0), (self.U, self.U0)):
                fixed.mul_(1 + 1e-3)
                trained.copy_(fixed)

    monkeypatch.setattr(Residual, "decompose", other_rounding)
    assert finetune(strong_cache, out) == 0
    assert_same_run(out, svd_run)


@pytest.mark.slow
def test_an_svd_run_resumes_after_kill_9_to_the_same_result(svd_run, strong_cache, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    kill_at_first_checkpoint(["--base-cache", str(strong_cache), "--out", str(out), *SVD], out)
    assert finetune(strong_cache, out) == 0
    assert_same_run(out, svd_run)
