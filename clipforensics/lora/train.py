"""Training of the LoRA stage: the run, its optimisation, one epoch, validation and the best epoch.

Everything random in epoch e is drawn from generators seeded by (seed, e) (see `lora.data`). A run killed after
epoch k and started again therefore continues exactly as the uninterrupted run would have: the checkpoint holds
the trainable tensors, optimizer, scheduler, gradient scaler, history and best epoch, and needs no RNG state.

Under torchrun (`lora.distributed`) the ranks train one DistributedDataParallel model, each on its share of every
global batch; the order, each image's augmentation (seeded by its position in the epoch) and the batches are the
same for every number of processes, so N processes train the run one process would (to float rounding). Rank 0
starts or resumes the run and hands its state to the others.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from clipforensics.core.progress import progress

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_csv
from clipforensics.data.scores import make_scores
from clipforensics.measure.metrics import frame_video_auc
from clipforensics.extract.models import DTYPES, LoadedModel, resolve_precision
from clipforensics.extract.reader import ImageFiles, collate_images
from clipforensics.lora.data import LabelledImages, TrainImages, augmentations, epoch_seed, make_loader, training_order
from clipforensics.lora.distributed import Ranks, current_ranks
from clipforensics.lora.model import Detector, build_detector, seeded_torch_rng
from clipforensics.lora.settings import LoraSettings
from clipforensics.lora.selection import SELECTIONS

LOG = "train_log.csv"
LOG_COLUMNS = ("epoch", "loss", "val_frame_auc", "val_video_auc", "seconds", "images_per_s", "data_wait_share",
               "lr")


def training_precision(name: str, device: torch.device) -> str:
    """The autocast precision of training: on CUDA by the one rule extraction uses (`models.resolve_precision`);
    the CPU trains in fp32, since its bf16 choice is about inference weights and training must keep fp32 ones."""
    if device.type == "cuda":
        return resolve_precision(name, device).precision
    if name not in ("auto", "fp32"):
        raise UserError(f"--train-precision {name} needs a CUDA device; the CPU trains in fp32 (--train-precision "
                        "fp32 or auto)")
    return "fp32"


@dataclass
class TrainRun:
    """Everything a training run reads: the model, the frames, the settings, and what a checkpoint must match."""

    detector: Detector
    preprocess: Callable[[Image.Image], torch.Tensor]
    image_size: int
    data_root: Path
    train: LabelledImages
    val_rows: pd.DataFrame
    settings: LoraSettings
    device: torch.device
    precision: str
    identity: dict[str, Any]
    out: Path
    ranks: Ranks
    model: nn.Module
    """What training calls: the detector, under DistributedDataParallel on torchrun's ranks."""

    @classmethod
    def build(cls, loaded: LoadedModel, settings: LoraSettings, data_root: str | Path, train_rows: pd.DataFrame,
              val_rows: pd.DataFrame | None = None, identity: dict[str, Any] | None = None) -> "TrainRun":
        """LoRA and head on `loaded` (seeded by `settings.train_seed`), training on `train_rows` under `data_root`.

        `identity` is what a checkpoint in `settings.out` must match to be resumed; without `val_rows` the run
        can train but not validate (benchmarks).
        """
        root, ranks = Path(data_root), current_ranks()
        detector = build_detector(loaded, settings)
        return cls(detector=detector, preprocess=loaded.preprocess, image_size=loaded.image_size, data_root=root,
                   train=LabelledImages.of(root, train_rows, sources=settings.pair_batches),
                   val_rows=val_rows if val_rows is not None else train_rows.iloc[:0], settings=settings,
                   device=loaded.device, precision=training_precision(settings.train_precision, loaded.device),
                   identity=identity or {}, out=Path(settings.out), ranks=ranks, model=ranks.wrap(detector))

    def autocast(self) -> torch.autocast:
        """Mixed precision of training: fp32 master weights, matmuls in the run's precision (CUDA only)."""
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision], enabled=self.precision != "fp32")

    def loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return make_loader(dataset, self.settings, self.device, **kwargs)


@dataclass
class Optimization:
    """AdamW with warm-up + cosine schedule and (fp16 only) a gradient scaler."""

    params: list[torch.nn.Parameter]
    optimizer: torch.optim.AdamW
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def warmup_cosine(total: int, warmup: float) -> Callable[[int], float]:
    """LR factor per step: linear warm-up (a fraction of all steps if < 1, else steps), then cosine to 0."""
    warm = min(total, int(round(warmup * total)) if warmup < 1 else int(warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return factor


def make_optimization(run: TrainRun) -> Optimization:
    s = run.settings
    params = list(run.detector.trainable().values())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": s.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=s.lr)
    total = s.epochs * -(-len(run.train) // s.batch_size)
    return Optimization(params, optimizer, LambdaLR(optimizer, warmup_cosine(total, s.warmup)),
                        torch.amp.GradScaler(run.device.type, enabled=run.precision == "fp16"))


def train_step(run: TrainRun, optim: Optimization, images: torch.Tensor, labels: torch.Tensor,
               weight: float = 1.0) -> float:
    """One optimizer step on this process's images; returns their mean loss. `weight` scales the loss that is
    differentiated: a rank's share of the global batch (`Ranks.batch_shares`), 1 in one process."""
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    with run.autocast():
        logits = run.model(images)
    loss = F.cross_entropy(logits.float(), labels) + run.detector.extra_loss(labels)
    optim.scaler.scale(loss * weight).backward()
    if run.settings.clip_grad > 0:
        optim.scaler.unscale_(optim.optimizer)
        torch.nn.utils.clip_grad_norm_(optim.params, run.settings.clip_grad)
    optim.scaler.step(optim.optimizer)
    optim.scaler.update()
    optim.optimizer.zero_grad(set_to_none=True)
    optim.scheduler.step()
    return loss.item()


def _timed(batches: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Each batch with the seconds spent waiting for it (decoding, augmentation, transfer from workers)."""
    while True:
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - start


def train_epoch(run: TrainRun, optim: Optimization, epoch: int, max_steps: int | None = None) -> dict[str, float]:
    """One epoch (or its first `max_steps` steps).

    Returns the mean loss, seconds, images/s, the share of time spent waiting on the DataLoader and the learning
    rate at the epoch's first step.
    """
    s, ranks = run.settings, run.ranks
    seed = epoch_seed(s.train_seed, epoch)
    order = training_order(run.train, s, epoch)
    shares = ranks.batch_shares(len(order), s.batch_size)
    loader = run.loader(TrainImages(run.train, order, run.preprocess, augmentations(s), s.train_seed, epoch),
                        batch_sampler=[share.positions for share in shares],
                        generator=torch.Generator().manual_seed(seed))
    run.detector.train()
    lr = optim.scheduler.get_last_lr()[0]
    loss_sum, images, waited = 0.0, 0, 0.0
    start = time.perf_counter()
    bar = progress(total=len(order), desc=f"epoch {epoch}/{s.epochs}", unit="img", leave=False,
                   enabled=ranks.leader)
    with seeded_torch_rng(seed if ranks.leader else epoch_seed(s.train_seed, epoch, ranks.shard.rank), run.device), bar:
        for step, ((batch, labels), wait) in enumerate(_timed(iter(loader))):
            share = shares[step]
            loss = train_step(run, optim, batch, labels, share.weight)
            loss_sum, images, waited = loss_sum + loss * share.count, images + share.count, waited + wait
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(len(share.positions) * ranks.world)
            if max_steps is not None and step + 1 >= max_steps:
                break
    loss_sum, images = ranks.total(loss_sum, images)
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / images, "seconds": seconds, "images_per_s": images / seconds,
            "data_wait_share": waited / seconds, "lr": lr}


def predict(run: TrainRun, frames: LabelledImages) -> np.ndarray:
    """Fake probability (softmax over [real, fake]) of each frame, in order, without augmentation."""
    loader = run.loader(ImageFiles(frames.root, frames.paths, run.preprocess, run.image_size),
                        collate_fn=collate_images)
    run.detector.eval()
    probs = []
    with torch.no_grad(), run.autocast():
        for images, _, reasons in loader:
            failed = next((reason for reason in reasons if reason), None)
            if failed:
                raise UserError(f"cannot read a frame under {frames.root}: {failed}")
            logits = run.detector(images.to(run.device, non_blocking=True))
            probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
    return torch.cat(probs).numpy().astype(np.float64)


def auc_metrics(rows: pd.DataFrame, probs: np.ndarray, prefix: str) -> dict[str, float]:
    """Frame AUC and video AUC (video score = mean of its frames' probabilities)."""
    frame, video = frame_video_auc(make_scores(rows, probs), split="validation" if prefix == "val" else prefix)
    return {f"{prefix}_frame_auc": frame, f"{prefix}_video_auc": video}


def validate(run: TrainRun) -> dict[str, float]:
    return auc_metrics(run.val_rows, predict(run, LabelledImages.of(run.data_root, run.val_rows)), "val")


@dataclass
class TrainState:
    """Where training stands: last finished epoch, one history row per epoch (0 = untrained), the chosen epoch
    (`best`: by the `--select` rule, on validation or the last)."""

    epoch: int
    history: list[dict[str, Any]]
    best_epoch: int
    best: dict[str, torch.Tensor]

    def record(self, row: dict[str, Any], detector: Detector, select: str = "val") -> None:
        self.history.append(row)
        self.epoch = row["epoch"]
        if SELECTIONS.get(select).replaces(row, self.best_row):
            self.best_epoch, self.best = self.epoch, detector.trainable_state()

    @property
    def best_row(self) -> dict[str, Any]:
        return self.history[self.best_epoch]


def untrained_state(run: TrainRun) -> TrainState:
    """Epoch 0: the model before any step (for the prompt head, the zero-shot baseline)."""
    row = {"epoch": 0, "loss": float("nan"), **validate(run), "seconds": 0.0, "images_per_s": float("nan"),
           "data_wait_share": float("nan"), "lr": 0.0}
    return TrainState(0, [row], 0, run.detector.trainable_state())


def _on_cpu(value: Any) -> Any:
    """`value` with every tensor inside its dicts, lists and tuples moved to the CPU (to send it to other ranks)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(item) for item in value)
    return value


def start_training(run: TrainRun, optim: Optimization, start: Callable[[], TrainState]) -> TrainState:
    """`start` (start or resume the run) on rank 0, which alone reads and clears the run folder; the other ranks
    take its trainable tensors, optimizer state and training state."""
    if not run.ranks.torchrun:
        return start()
    state = start() if run.ranks.leader else None
    sent = (run.detector.trainable_state(), _on_cpu(optim.state_dict()), state) if run.ranks.leader else None
    trainable, optim_state, state = run.ranks.broadcast(sent)
    if not run.ranks.leader:
        run.detector.load_trainable_state(trainable)
        optim.load_state_dict(optim_state)
    return state


def write_log(path: Path, history: list[dict[str, Any]]) -> None:
    write_csv(path, pd.DataFrame(history, columns=list(LOG_COLUMNS)))
