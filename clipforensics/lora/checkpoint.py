"""What a fine-tuning run keeps: the resumable training checkpoint, and the finished model as the method's saved
change (its `Method.save`), head tensors and merged open_clip weights.

The checkpoint carries the run's identity (base cache, protocol, learning settings); a folder holding a checkpoint
made with other settings is refused by name, so a resumed run is always the run that was asked for. Besides the
trainable tensors it keeps the method's fixed ones (`fixed`: what the method computed at attach time, e.g. svd's
initial residual), so a resume never depends on attach recomputing them bit for bit on another machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import safetensors.torch
from safetensors import SafetensorError, safe_open
import torch
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.core.identity import claim
from clipforensics.core.io import OutputDir, atomic_path
from clipforensics.lora.files import save_tensors
from clipforensics.lora.model import SAVED_HEADS, Detector
from clipforensics.lora.train import Optimization, TrainRun, TrainState, untrained_state

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
HEAD_SHA = "head_sha"  # lora.json's sha256 of head.safetensors (runs/tuned.py refuses a head copied from another run)
MERGED_SHA = "merged_sha"  # lora.json's sha256 of the merged tower's weights


def save_checkpoint(run: TrainRun, optim: Optimization, state: TrainState) -> None:
    payload = {"version": CHECKPOINT_VERSION, "identity": json.dumps(run.identity, sort_keys=True),
               "epoch": state.epoch, "trainable": run.detector.trainable_state(),
               "fixed": fixed_tensors(run.detector), **optim.state_dict(),
               "history": state.history, "best_epoch": state.best_epoch, "best": state.best}
    with atomic_path(run.out / CHECKPOINT, suffix=".pt") as tmp:
        torch.save(payload, tmp)


CHECKPOINT_KEYS = ("identity", "epoch", "trainable", "history", "best_epoch", "best")
"""Keys every checkpoint holds; `fixed` is optional (checkpoints written before it resume by attach's recompute)."""


def fixed_tensors(detector: Detector) -> dict[str, torch.Tensor]:
    """CPU copies of the method's saved tensors that do not train (`Method.state` beyond `Method.trainable`): the
    fixed tensors attach computed, which the trainable state alone cannot bring back. Empty for most methods."""
    trained = {p.data_ptr() for p in detector.method.trainable(detector.adapted).values()}
    return {name: t.to("cpu", copy=True) for name, t in detector.method.state(detector.adapted).items()
            if t.data_ptr() not in trained}


def restore_fixed(detector: Detector, fixed: Mapping[str, torch.Tensor]) -> None:
    """Put a checkpoint's fixed tensors back into the attached method (`Method.load_state`, its trainable tensors
    left as they are: the checkpoint's trainable state is loaded after)."""
    if fixed:
        detector.method.load_state(detector.adapted, {**detector.method.state(detector.adapted), **fixed})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint this code wrote, or a UserError (an empty, truncated or foreign file is not one)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on a damaged file (EOF, zip, pickle, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path} is not a readable checkpoint ({first}); pass --overwrite to start again") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION:
        version = checkpoint.get("version") if isinstance(checkpoint, dict) else None
        raise UserError(f"{path} has checkpoint version {version}; this code reads "
                        f"{CHECKPOINT_VERSION} (pass --overwrite to start again)")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; pass --overwrite to start again")
    return checkpoint


RESUME = "rerun with the same settings to resume, or with --overwrite to start again"


def claim_checkpoint(identity: dict[str, Any], run_dir: OutputDir, overwrite: bool) -> dict[str, Any] | None:
    """The checkpoint to resume, if the run folder holds one made with `identity`.

    A run made with other settings, or a damaged checkpoint, is refused, or with --overwrite replaced: only
    the files this stage wrote are removed. A folder without a checkpoint holds no training to lose (a
    start that failed): what the stage wrote there is cleared and training starts.
    """
    path = run_dir.path / CHECKPOINT
    if CHECKPOINT not in run_dir.entries or not path.is_file():
        run_dir.clear()
        return None
    try:
        checkpoint = read_checkpoint(path)
        old = json.loads(checkpoint["identity"])
        if not isinstance(old, dict):
            raise ValueError("the recorded identity is not a JSON object")
    except (UserError, TypeError, ValueError):
        if not overwrite:
            raise
        run_dir.clear()
        return None
    same = claim(old, identity, str(path), overwrite=overwrite, replace=run_dir.clear, remedy=RESUME)
    return checkpoint if same else None


def refuse_other_checkpoint(identity: dict[str, Any], run_dir: OutputDir, overwrite: bool) -> None:
    """Refuse a checkpoint this run may not resume before the stage prints anything; under --overwrite nothing
    is removed yet (a later check may still fail): `claim_checkpoint` replaces it when training starts."""
    if not overwrite:
        claim_checkpoint(identity, run_dir, overwrite=False)


def resume_or_start(run: TrainRun, optim: Optimization, run_dir: OutputDir) -> TrainState:
    checkpoint = claim_checkpoint(run.identity, run_dir, run.settings.overwrite)
    if checkpoint is None:
        return untrained_state(run)
    restore_fixed(run.detector, checkpoint.get("fixed") or {})
    run.detector.load_trainable_state(checkpoint["trainable"])
    optim.load_state_dict(checkpoint)
    print(f"resuming {run.out} after epoch {checkpoint['epoch']} of {run.settings.epochs}", file=sys.stderr)
    return TrainState(checkpoint["epoch"], checkpoint["history"], checkpoint["best_epoch"], checkpoint["best"])


def save_change(detector: Detector, run: Path) -> Path:
    """The method's change, saved into the run folder; returns the file whose sha256 the run records."""
    return detector.method.save(detector.adapted, run, detector.settings)


def save_head_tensors(head: nn.Module, path: Path, meta: Mapping[str, Any]) -> Path:
    """The head's tensors (prompt class means or linear weights, temperature), with what it is in the metadata."""
    return save_tensors(head.state_dict(), path, {key: json.dumps(value) for key, value in meta.items()})


def load_head_tensors(path: Path) -> nn.Module:
    """The head a run saved, rebuilt from head.safetensors (its metadata names the kind), in eval mode on the CPU;
    a missing or damaged file, or one of another kind, is a UserError."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            kind = json.loads((fh.metadata() or {}).get("head", "null"))
        state = safetensors.torch.load_file(str(path))
        head = SAVED_HEADS.get(str(kind))(state)
        head.load_state_dict(state)
    except (OSError, SafetensorError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path} is not a readable LoRA head ({first})") from None
    return head.float().eval()


def save_merged(detector: Detector, path: Path) -> Path:
    """Fold the method's change into the weights and save the plain open_clip state dict (`--pretrained PATH`
    loads it). The method may rewrite the model in place: the detector is spent afterwards."""
    return save_tensors(detector.method.merge(detector.adapted).state_dict(), path)
