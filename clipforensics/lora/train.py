"""Training of the LoRA stage: class-balanced seeded epochs, validation after each, the best epoch kept, exact resume.

Everything random in epoch e (the image order, each image's augmentation, LoRA dropout) is drawn from generators
seeded by (seed, e). A run killed after epoch k and started again therefore continues exactly as the uninterrupted
run would have: the checkpoint holds the trainable tensors, optimizer, scheduler, gradient scaler, history and best
epoch, and needs no RNG state.
"""

from __future__ import annotations

import functools
import io
import json
import math
import pickle
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from clipforensics.core.io import atomic_path, write_csv
from clipforensics.core.errors import UserError
from clipforensics.extract.reader import ImageFiles, collate_images
from clipforensics.lora.model import Detector, LoraSettings, lookup
from clipforensics.evaluate.metrics import frame_video_auc
from clipforensics.data.scores import make_scores

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
LOG = "train_log.csv"
LOG_COLUMNS = ("epoch", "loss", "val_frame_auc", "val_video_auc", "seconds", "images_per_s", "data_wait_share",
               "lr")
ORDER_STREAM, AUGMENT_STREAM = 0, 1
CROP_RATIO = (0.9, 1.1)
JPEG_MAX_QUALITY = 95
AMP_DTYPES: dict[str, torch.dtype | None] = {"fp16": torch.float16, "bf16": torch.bfloat16, "none": None}


@dataclass(frozen=True)
class Frames:
    """Image files of some manifest rows, with their labels."""

    root: Path
    paths: list[str]
    labels: np.ndarray

    @classmethod
    def of(cls, root: str | Path, rows: pd.DataFrame) -> "Frames":
        return cls(Path(root), rows["path"].tolist(), rows["label"].to_numpy(np.int64))

    def __len__(self) -> int:
        return len(self.paths)


def epoch_rng(seed: int, epoch: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream, *more])


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of torch's RNG (LoRA dropout, DataLoader worker seeds) for one epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_order(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch's image order: half real, half fake (the smaller class cycled without replacement), shuffled."""
    rng = epoch_rng(seed, epoch, ORDER_STREAM)
    n = len(labels)
    picks = []
    for label, need in ((0, n // 2), (1, n - n // 2)):
        members = np.flatnonzero(labels == label)
        cycles = -(-need // len(members))
        picks.append(np.concatenate([rng.permutation(members) for _ in range(cycles)])[:need])
    return rng.permutation(np.concatenate(picks))


def _crop(img: Image.Image, rng: np.random.Generator, settings: LoraSettings) -> Image.Image:
    """Random-resized crop keeping at least `crop_scale` of the area, aspect close to the original."""
    w, h = img.size
    area = rng.uniform(settings.crop_scale, 1.0) * w * h
    ratio = math.exp(rng.uniform(*np.log(CROP_RATIO)))
    cw, ch = min(w, round(math.sqrt(area * ratio))), min(h, round(math.sqrt(area / ratio)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def _flip(img: Image.Image, rng: np.random.Generator, settings: LoraSettings) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def _jpeg(img: Image.Image, rng: np.random.Generator, settings: LoraSettings) -> Image.Image:
    """Re-compression, as frames meet it on the way to a detector; half of the images, random quality."""
    if rng.random() >= 0.5:
        return img
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=int(rng.integers(settings.jpeg_quality, JPEG_MAX_QUALITY + 1)))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


Augmentation = Callable[[Image.Image, np.random.Generator], Image.Image]
AUGMENTATIONS: dict[str, tuple[Callable[[LoraSettings], bool], Callable[..., Image.Image]]] = {
    "crop": (lambda s: s.crop_scale < 1, _crop),
    "flip": (lambda s: s.flip, _flip),
    "jpeg": (lambda s: s.jpeg_quality is not None, _jpeg),
}
"""Light, forensics-safe augmentations in the order they apply: (enabled by settings?, function)."""


def augmentations(settings: LoraSettings) -> list[Augmentation]:
    return [functools.partial(fn, settings=settings) for enabled, fn in AUGMENTATIONS.values() if enabled(settings)]


class TrainImages(Dataset):
    """One epoch of training images in a fixed order; image k's augmentation is seeded by (seed, epoch, k)."""

    def __init__(self, frames: Frames, order: np.ndarray, preprocess: Callable[[Image.Image], torch.Tensor],
                 steps: list[Augmentation], seed: int, epoch: int) -> None:
        self.frames, self.order, self.preprocess, self.steps = frames, order, preprocess, steps
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        i = int(self.order[k])
        rng = epoch_rng(self.seed, self.epoch, AUGMENT_STREAM, k)
        with Image.open(self.frames.root / self.frames.paths[i]) as img:
            img = img.convert("RGB")
        for step in self.steps:
            img = step(img, rng)
        return self.preprocess(img), int(self.frames.labels[i])


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (auto: fp16); the CPU trains in fp32."""
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "none"
    dtype = lookup(AMP_DTYPES, name, "AMP mode")
    if dtype is not None and device.type != "cuda":
        raise UserError(f"--amp {name} needs a CUDA device; the CPU trains in fp32 (--amp none or auto)")
    return dtype


@dataclass
class TrainRun:
    """Everything a training run reads: the model, the frames, the settings, and what a checkpoint must match."""

    detector: Detector
    preprocess: Callable[[Image.Image], torch.Tensor]
    image_size: int
    data_root: Path
    train: Frames
    val_rows: pd.DataFrame
    settings: LoraSettings
    device: torch.device
    amp: torch.dtype | None
    identity: dict[str, Any]
    out: Path

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        workers = self.settings.workers
        return DataLoader(dataset, batch_size=self.settings.batch_size, num_workers=workers,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4 if workers else None, **kwargs)


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
                        torch.amp.GradScaler(run.device.type, enabled=run.amp == torch.float16))


def train_step(run: TrainRun, optim: Optimization, images: torch.Tensor, labels: torch.Tensor) -> float:
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    with run.autocast():
        logits = run.detector(images)
    loss = F.cross_entropy(logits.float(), labels)
    optim.scaler.scale(loss).backward()
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
    s = run.settings
    torch.manual_seed(epoch_seed(s.seed, epoch))
    order = epoch_order(run.train.labels, s.seed, epoch)
    loader = run.loader(TrainImages(run.train, order, run.preprocess, augmentations(s), s.seed, epoch))
    run.detector.train()
    lr = optim.scheduler.get_last_lr()[0]
    loss_sum, images, waited = 0.0, 0, 0.0
    start = time.perf_counter()
    with tqdm(total=len(order), desc=f"epoch {epoch}/{s.epochs}", unit="img", leave=False, dynamic_ncols=True,
              file=sys.stderr) as bar:
        for step, ((batch, labels), wait) in enumerate(_timed(iter(loader))):
            loss = train_step(run, optim, batch, labels)
            loss_sum, images, waited = loss_sum + loss * len(labels), images + len(labels), waited + wait
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(len(labels))
            if max_steps is not None and step + 1 >= max_steps:
                break
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / images, "seconds": seconds, "images_per_s": images / seconds,
            "data_wait_share": waited / seconds, "lr": lr}


def predict(run: TrainRun, frames: Frames) -> np.ndarray:
    """Fake probability (softmax over [real, fake]) of each frame, in order, without augmentation."""
    loader = run.loader(ImageFiles(frames.root, frames.paths, run.preprocess, run.image_size), collate_fn=collate_images)
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
    frame, video = frame_video_auc(make_scores(rows, probs))
    return {f"{prefix}_frame_auc": frame, f"{prefix}_video_auc": video}


def validate(run: TrainRun) -> dict[str, float]:
    return auc_metrics(run.val_rows, predict(run, Frames.of(run.data_root, run.val_rows)), "val")


def selection_key(row: dict[str, Any]) -> tuple[float, float]:
    """Best epoch: highest val video AUC, then val frame AUC; the earlier epoch wins ties."""
    return row["val_video_auc"], row["val_frame_auc"]


@dataclass
class TrainState:
    """Where training stands: last finished epoch, one history row per epoch (0 = untrained), the best epoch."""

    epoch: int
    history: list[dict[str, Any]]
    best_epoch: int
    best: dict[str, torch.Tensor]

    def record(self, row: dict[str, Any], detector: Detector) -> None:
        self.history.append(row)
        self.epoch = row["epoch"]
        if self.best_epoch == 0 or selection_key(row) > selection_key(self.history[self.best_epoch]):
            self.best_epoch, self.best = self.epoch, detector.trainable_state()

    @property
    def best_row(self) -> dict[str, Any]:
        return self.history[self.best_epoch]


def untrained_state(run: TrainRun) -> TrainState:
    """Epoch 0: the model before any step (for the prompt head, the zero-shot baseline)."""
    row = {"epoch": 0, "loss": float("nan"), **validate(run), "seconds": 0.0, "images_per_s": float("nan"),
           "data_wait_share": float("nan"), "lr": 0.0}
    return TrainState(0, [row], 0, run.detector.trainable_state())


def save_checkpoint(run: TrainRun, optim: Optimization, state: TrainState) -> None:
    payload = {"version": CHECKPOINT_VERSION, "identity": json.dumps(run.identity, sort_keys=True),
               "epoch": state.epoch, "trainable": run.detector.trainable_state(), **optim.state_dict(),
               "history": state.history, "best_epoch": state.best_epoch, "best": state.best}
    with atomic_path(run.out / CHECKPOINT, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise UserError(f"{path} is not a readable checkpoint ({str(exc).splitlines()[0]}); remove it or "
                        "pass --overwrite") from None
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{path} has checkpoint version {checkpoint.get('version')}; this code reads "
                        f"{CHECKPOINT_VERSION} (pass --overwrite to start again)")
    return checkpoint


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new))
                for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def claim_checkpoint(run: TrainRun) -> dict[str, Any] | None:
    """The checkpoint to resume, if --out holds one made with these settings.

    A run made with other settings is refused, or with --overwrite removed (the folder is known to be a run);
    other files in --out are refused unless --overwrite, and then left alone.
    """
    path = run.out / CHECKPOINT
    if not path.exists():
        if run.out.is_dir() and any(run.out.iterdir()) and not run.settings.overwrite:
            raise UserError(f"--out {run.out} is not empty and holds no LoRA checkpoint; use another folder or "
                            "--overwrite")
        return None
    checkpoint = read_checkpoint(path)
    old = json.loads(checkpoint["identity"])
    changed = _differences(old, json.loads(json.dumps(run.identity)))
    if not changed:
        return checkpoint
    if not run.settings.overwrite:
        raise UserError(f"{path} was made with other settings ({'; '.join(changed[:4])}); rerun with the same "
                        "settings to resume, or --overwrite to start again")
    shutil.rmtree(run.out)
    return None


def resume_or_start(run: TrainRun, optim: Optimization) -> TrainState:
    checkpoint = claim_checkpoint(run)
    if checkpoint is None:
        return untrained_state(run)
    run.detector.load_trainable_state(checkpoint["trainable"])
    optim.load_state_dict(checkpoint)
    print(f"resuming {run.out} after epoch {checkpoint['epoch']} of {run.settings.epochs}", file=sys.stderr)
    return TrainState(checkpoint["epoch"], checkpoint["history"], checkpoint["best_epoch"], checkpoint["best"])


def write_log(path: Path, history: list[dict[str, Any]]) -> None:
    write_csv(path, pd.DataFrame(history, columns=list(LOG_COLUMNS)))


def fit(run: TrainRun) -> TrainState:
    """Train (or resume) to the last epoch, validating and checkpointing after each; return the final state."""
    optim = make_optimization(run)
    state = resume_or_start(run, optim)
    epochs = range(state.epoch + 1, run.settings.epochs + 1)
    with tqdm(epochs, desc="LoRA", unit="epoch", dynamic_ncols=True, file=sys.stderr) as bar:
        bar.set_postfix(val_video_auc=f"{state.history[-1]['val_video_auc']:.3f}")
        for epoch in bar:
            row = {"epoch": epoch, **train_epoch(run, optim, epoch), **validate(run)}
            state.record(row, run.detector)
            save_checkpoint(run, optim, state)
            write_log(run.out / LOG, state.history)
            bar.set_postfix(loss=f"{row['loss']:.4f}", val_video_auc=f"{row['val_video_auc']:.3f}",
                            best=state.best_epoch)
    return state
