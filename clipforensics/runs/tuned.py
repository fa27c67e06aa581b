"""The fine-tuned-tower kind of run folder (finetune_lora.py): an image tower changed by a fine-tuning method,
a head on its embeddings, and the cache the changed tower re-extracted.

What differs between fine-tuning methods is only how the saved change is put back on the base model
(`TowerMethod.merge`) and how the run's settings are read: a new method is a `TowerMethod` and one
`RUN_KINDS.register` line in kinds.py (or the LoRA kind itself, when it saves a peft adapter the same way).
peft and the LoRA modules are imported inside the functions: a head run never needs them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.data.cache import FeatureCache
from clipforensics.extract.models import LoadedModel
from clipforensics.runs.base import Run, RunKind, Scorer
from clipforensics.lora.files import ADAPTER_DIR, ADAPTER_FILE, HEAD_FILE, sha256
from clipforensics.extract.tower import check_weights, load_tower, loaded_with


@dataclass(frozen=True)
class TowerMethod:
    """A fine-tuning method as a reader needs it: the file whose sha256 the run records, how the saved change
    goes back on a freshly loaded base model, and the autocast precision its training (and scoring) used."""

    title: str
    change: str  # the saved change, relative to the run folder; its sha256 is the record's adapter_sha
    merge: Callable[[nn.Module, Path], nn.Module]
    precision: Callable[[dict[str, Any], torch.device], str]


def merge_peft_adapter(model: nn.Module, run: Path) -> nn.Module:
    """A peft adapter (adapter/) merged into the base model's weights."""
    from clipforensics.lora.checkpoint import load_adapter
    try:
        return load_adapter(model, run / ADAPTER_DIR).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"cannot load the adapter of {run} ({str(exc).splitlines()[0]})") from None


def lora_precision(settings: dict[str, Any], device: torch.device) -> str:
    """The precision the run scored its frames in, as its training autocast resolves on this device (the setting
    itself where it cannot, e.g. --amp fp16 on a CPU: the caller says what to do)."""
    from clipforensics.core.settings import from_dict
    from clipforensics.lora.model import LoraSettings
    from clipforensics.lora.train import training_precision
    amp = from_dict(LoraSettings, settings).amp
    try:
        return training_precision(amp, device)
    except UserError:
        return amp


LORA = TowerMethod("LoRA", f"{ADAPTER_DIR}/{ADAPTER_FILE}", merge_peft_adapter, lora_precision)


@dataclass(frozen=True)
class TowerKind(RunKind):
    """The record names its base cache (`base`), its settings, the sha256 of its saved change (`adapter_sha`) and
    the cache its merged tower re-extracted (`lora_cache`); head.safetensors is its head."""

    method: TowerMethod = LORA

    def base(self, run: Run) -> tuple[str | None, dict[str, Any]]:
        base = run.record.get("base") or {}
        return base.get("cache"), base

    def scorer(self, run: Run) -> Scorer:
        from clipforensics.lora.checkpoint import load_head_tensors
        from clipforensics.lora.model import fake_probability
        return functools.partial(fake_probability, load_head_tensors(run.folder / HEAD_FILE))

    def scored_cache(self, run: Run) -> str:
        cache = run.record.get("lora_cache")
        if not cache:
            raise UserError(f"{run.folder}: the {self.title} was made with --no-extract, so no cache holds its merged "
                            "model's embeddings; rerun it with --extract")
        if not Path(cache).is_file():
            where = "" if Path(cache).is_absolute() else f" (relative to the folder training ran in, not {Path.cwd()})"
            raise UserError(f"{run.folder}: the {self.title}'s cache {cache} is not found{where}; run from that "
                            f"folder, or {self.fix} to re-extract it")
        return str(cache)

    def check_cache(self, run: Run, cache: FeatureCache) -> None:
        sha = run.record.get("adapter_sha")
        if cache.attrs.get("adapter_sha") != sha:
            raise UserError(f"{run.folder}: {cache.path} was not extracted with this run's adapter (sha256 "
                            f"{str(cache.attrs.get('adapter_sha'))[:16]} != {str(sha)[:16]})")

    def precision(self, run: Run, attrs: dict[str, Any], device: torch.device) -> str:
        return self.method.precision(run.record.get("settings") or {}, device)

    def tower(self, run: Run, attrs: dict[str, Any], device: str, precision: str) -> LoadedModel:
        change = run.folder / self.method.change
        if not change.is_file():
            raise UserError(f"cannot rebuild {run.folder}: its adapter {change} is missing")
        if sha256(change) != run.record.get("adapter_sha"):
            raise UserError(f"cannot rebuild {run.folder}: {change} is not the adapter the run recorded "
                            f"(sha256 differs from {str(run.record.get('adapter_sha'))[:16]})")
        check_weights(attrs, run.folder)
        base = load_tower(attrs, device, "fp32", str(run.folder))
        return loaded_with(base, self.method.merge(base.model, run.folder), precision)

    def notes(self, run: Run) -> list[str]:
        return [f"{self.method.title} best epoch {run.record.get('best_epoch')}, adapter sha256 "
                f"{str(run.record['adapter_sha'])[:16]}"]
