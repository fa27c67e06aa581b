"""The fine-tuning loop beyond one process and one order: torchrun ranks, paired batches, the selection rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import finetune_lora
from clipforensics.data.manifest import ManifestSettings, scan
from clipforensics.core.shards import Shard
from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.lora import data as lora_data
from clipforensics.lora import model as lora
from clipforensics.lora.distributed import Ranks
from clipforensics.lora.train import TrainRun, TrainState, make_optimization, train_epoch
from conftest import generated_cache

ROOT = Path(__file__).resolve().parents[1]
# 37 training images in global batches of 9: every batch divides unevenly over 2 ranks (4 + 5) and the last one
# (1 image) leaves rank 1 an empty share.
ARGS = ["--epochs", "3", "--batch-size", "9", "--max-train-images", "37", "--lr", "3e-3", "--rank", "4", "--alpha",
        "8", "--workers", "0", "--no-extract", "--crop-scale", "0.8", "--jpeg-quality", "60"]


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> Path:
    return generated_cache(tmp_path_factory, "ddp", videos=20, frames=2, size=48)


def test_two_processes_with_gloo_train_the_one_process_run(small_cache, tmp_path):
    """Losses per epoch, val AUCs, the chosen epoch and the scores, to float tolerance; rank 0 alone writes."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert finetune_lora.main(["--base-cache", str(small_cache), "--out", str(one), *ARGS]) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", "--standalone",
           str(ROOT / "finetune_lora.py"), "--base-cache", str(small_cache), "--out", str(two), *ARGS]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log_one, log_two = pd.read_csv(one / "train_log.csv"), pd.read_csv(two / "train_log.csv")
    for column in ("loss", "val_frame_auc", "val_video_auc"):
        np.testing.assert_allclose(log_two[column], log_one[column], rtol=1e-4, atol=1e-6, err_msg=column)
    summary_one, summary_two = (json.loads((run / "lora.json").read_text()) for run in (one, two))
    assert (summary_one["world_size"], summary_two["world_size"]) == (1, 2)
    assert summary_two["best_epoch"] == summary_one["best_epoch"]
    scores_one, scores_two = pd.read_csv(one / "scores.csv"), pd.read_csv(two / "scores.csv")
    assert scores_two["path"].tolist() == scores_one["path"].tolist()
    np.testing.assert_allclose(scores_two["score"], scores_one["score"], rtol=1e-4, atol=1e-6)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_batch_shares_weight_each_rank_to_the_full_batch_mean():
    """The weighted local means, averaged over the ranks as DDP does, equal the full batch's mean."""
    losses = np.random.default_rng(0).random(37)
    ranks = [Ranks(Shard(r, 2, torchrun=True)) for r in range(2)]
    shares = [rank.batch_shares(37, 9) for rank in ranks]
    assert [len(s) for s in shares] == [5, 5]
    for step, start in enumerate(range(0, 37, 9)):
        batch = list(range(start, min(start + 9, 37)))
        parts = [s[step] for s in shares]
        assert sum((p.positions if p.count else [] for p in parts), []) == batch
        averaged = sum(p.weight * losses[p.positions].mean() for p in parts) / 2
        assert averaged == pytest.approx(losses[batch].mean(), rel=1e-12)
    assert [s[-1].count for s in shares] == [0, 1] and shares[0][-1].weight == 0.0
    single = Ranks().batch_shares(37, 9)
    assert [s.positions for s in single] == [list(range(i, min(i + 9, 37))) for i in range(0, 37, 9)]
    assert all(s.weight == 1.0 for s in single)


def paired_frames() -> tuple[np.ndarray, np.ndarray]:
    """Real videos 000..009 (3 frames each), fakes t_s of targets 000..007 (3 frames each), 2 fakes of unknown
    source: 30 real and 30 fake frames."""
    reals = [f"{v:03d}" for v in range(10) for _ in range(3)]
    fakes = [f"{t:03d}" for t in range(8) for _ in range(3)] + ["x1"] * 3 + ["x2"] * 3
    return np.array([0] * 30 + [1] * 30), np.array(reals + fakes, dtype=object)


@pytest.mark.parametrize("batch_size", [8, 7])
def test_paired_order_puts_a_real_and_a_fake_of_one_video_in_each_batch(batch_size):
    labels, sources = paired_frames()
    order = lora_data.paired_order(labels, sources, seed=1, epoch=2, batch_size=batch_size)
    np.testing.assert_array_equal(np.sort(order), np.sort(lora_data.epoch_order(labels, seed=1, epoch=2)))
    np.testing.assert_array_equal(order, lora_data.paired_order(labels, sources, 1, 2, batch_size))
    assert not np.array_equal(order, lora_data.paired_order(labels, sources, 1, 3, batch_size))
    pairable = {s for s in sources[labels == 1] if s in set(sources[labels == 0])}
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        batch_fakes = {sources[i] for i in batch if labels[i] == 1 and sources[i] in pairable}
        batch_reals = {sources[i] for i in batch if labels[i] == 0}
        assert batch_fakes <= batch_reals, f"a fake without its real video in batch {start // batch_size}"
    paired = sum(1 for k in range(len(order) - 1) if labels[order[k]] == 0 and labels[order[k + 1]] == 1
                 and sources[order[k]] == sources[order[k + 1]])
    assert paired >= 20  # 24 pairable fake frames, each next to a real frame of its video (bar one straddle)


def test_source_videos_of_ffpp_rows():
    rows = pd.DataFrame({"video": ["original/000", "FaceSwap/000_003", "FaceSwap/000_003", "Deepfakes/zz"],
                         "label": [0, 1, 1, 1], "target": ["000", "000", "000", ""], "source": ["", "003", "003", ""]})
    assert lora_data.source_videos(rows).tolist() == ["000", "000", "000", "zz"]


def test_select_last_takes_the_last_epoch_and_val_the_best():
    rows = [{"epoch": e, "val_video_auc": auc, "val_frame_auc": 0.5} for e, auc in enumerate([0.5, 0.9, 0.7, 0.8])]
    for select, chosen in (("val", 1), ("last", 3)):
        state = TrainState(0, [rows[0]], 0, {})
        for row in rows[1:]:
            state.record(row, _NoTensors(), select)
        assert state.best_epoch == chosen, select


class _NoTensors:
    def trainable_state(self) -> dict:
        return {}


def test_an_epoch_with_paired_batches_trains(synthetic_root):
    settings = lora.LoraSettings(base_cache="-", out="-", rank=4, alpha=8, batch_size=8, workers=0, pair_batches=True)
    rows = scan(ManifestSettings(data_root=str(synthetic_root)))
    run = TrainRun.build(load_model(ModelSettings(model="tiny-vit", pretrained="none"), "cpu", "fp32"), settings,
                         synthetic_root, rows)
    order = lora_data.training_order(run.train, settings, epoch=1)
    first = order[:8]
    assert {run.train.sources[i] for i in first if run.train.labels[i] == 1} & \
        {run.train.sources[i] for i in first if run.train.labels[i] == 0}
    assert np.isfinite(train_epoch(run, make_optimization(run), epoch=1, max_steps=2)["loss"])
