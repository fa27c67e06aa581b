"""The fine-tuned-tower kind of run folder (finetune_lora.py): an image tower changed by a fine-tuning method,
a head on its embeddings, and the cache the changed tower re-extracted.

The record names its method (`method`; records older than the methods are LoRA's), and the tower is rebuilt
through that method's `load` and `merge` (clipforensics.lora.methods.METHODS): a new method needs nothing here.
The fine-tuning modules that load torch and peft are imported inside the functions: a head run never needs
them (its settings, lora/settings.py, are light).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipforensics.core.errors import UserError
from clipforensics.core.settings import from_dict
from clipforensics.data.cache import FeatureCache
from clipforensics.runs.base import Run, RunKind, Scorer
from clipforensics.runs.records import check_artifact
from clipforensics.core.paths import sha256_file
from clipforensics.lora.files import HEAD_FILE
from clipforensics.lora.settings import LoraSettings

if TYPE_CHECKING:  # torch and the model code load only when a tower is rebuilt (detect.py), not to score a run
    import torch
    from torch import nn

    from clipforensics.extract.models import LoadedModel


def run_settings(run: Run) -> LoraSettings:
    """The run's LoraSettings, as recorded (fields added since read as their defaults, renamed ones from their old
    keys: records made before --amp became --train-precision)."""
    return from_dict(LoraSettings, run.record.get("settings") or {})


def run_method(run: Run) -> Any:
    """The fine-tuning method the record names (LoRA for records that predate the choice)."""
    from clipforensics.lora.methods import METHODS
    return METHODS.get(str(run.record.get("method") or run_settings(run).method))


def merge_change(run: Run, model: nn.Module) -> nn.Module:
    """The run's saved change put back on a freshly loaded base model and merged into its weights."""
    method = run_method(run)
    try:
        return method.merge(method.load(model.requires_grad_(False), run.folder, run_settings(run)))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"cannot load the {method.title} change of {run.folder} "
                        f"({str(exc).splitlines()[0]})") from None


def tower_precision(run: Run, device: torch.device) -> str:
    """The precision the run scored its frames in, as its training autocast resolves on this device (the setting
    itself where it cannot, e.g. --train-precision fp16 on a CPU: the caller says what to do)."""
    from clipforensics.lora.train import training_precision
    trained_in = run_settings(run).train_precision
    try:
        return training_precision(trained_in, device)
    except UserError:
        return trained_in


@dataclass(frozen=True)
class TowerKind(RunKind):
    """The record names its base cache (`base`), its method and settings, the sha256 of its saved change
    (`adapter_sha`), of its head (`head_sha`, checked before head.safetensors is scored) and of its merged tower
    (`merged_sha`), and the cache its merged tower re-extracted (`lora_cache`)."""

    def base(self, run: Run) -> tuple[str | None, dict[str, Any]]:
        base = run.record.get("base") or {}
        return base.get("cache"), base

    def scorer(self, run: Run) -> Scorer:
        from clipforensics.lora.checkpoint import HEAD_SHA, load_head_tensors
        from clipforensics.lora.model import fake_probability
        check_artifact(run.folder / HEAD_FILE, run.record.get(HEAD_SHA), self.fix)
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
        return tower_precision(run, device)

    def tower(self, run: Run, attrs: dict[str, Any], device: str, precision: str) -> LoadedModel:
        change = run.folder / run_method(run).change_file
        if not change.is_file():
            raise UserError(f"cannot rebuild {run.folder}: its adapter {change} is missing")
        if sha256_file(change) != run.record.get("adapter_sha"):
            raise UserError(f"cannot rebuild {run.folder}: {change} is not the adapter the run recorded "
                            f"(sha256 differs from {str(run.record.get('adapter_sha'))[:16]})")
        from clipforensics.extract.tower import check_weights, load_tower, loaded_with
        check_weights(attrs, run.folder)
        base = load_tower(attrs, device, "fp32", str(run.folder))
        return loaded_with(base, merge_change(run, base.model), precision)

    def notes(self, run: Run) -> list[str]:
        return [f"{run_method(run).title} best epoch {run.record.get('best_epoch')}, adapter sha256 "
                f"{str(run.record['adapter_sha'])[:16]}"]
