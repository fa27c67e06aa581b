"""LoRA on CLIP's image tower through peft (`--method lora`, the default): named target sets, and the checks the
fused attention path needs.

Three peft 0.21 behaviours on open_clip's `nn.MultiheadAttention` shape this module (tests/test_lora.py shows the
first two):
- MHA never calls `out_proj.forward`, so LoRA on `attn.out_proj` alone gets no gradient and no warning. A target
  set is therefore tried with one backward pass before training, and LoRA tensors the pass never reaches are an
  error (`check_gradients`). Targeting the `attn` module itself adapts the fused in-projection and out-projection.
- peft adapts MHA by adding its delta to the frozen weights before each forward and subtracting it after, which
  leaves them off by rounding (~1e-8 per forward). `keep_base_exact` puts the untouched tensors back after every
  forward, so the base stays bit-identical and a resumed run equals an uninterrupted one.
- peft 0.21 adds the out_proj delta twice on that path (huggingface/peft PR #3774). Training, merging and reloading
  all take the same path, so the model is self-consistent, but a peft with the fix would load the adapter
  differently: the merged checkpoint is the artefact to keep. The same merging means LoRA dropout has no effect
  on attention targets; it acts on MLP targets only.

The change is peft's adapter folder (adapter/, `save_pretrained`); its adapter_model.safetensors is hashed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import peft
from peft.tuners.lora.layer import MultiheadAttention as LoraMultiheadAttention
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.lora.methods.base import METHODS, Method, unreached
from clipforensics.lora.targets import TARGET_SETS, target_regex

ADAPTER_DIR = "adapter"
ADAPTER_FILE = "adapter_model.safetensors"  # inside ADAPTER_DIR, peft's name


def _pin(module: nn.Module, args: Any, kwargs: Any) -> None:
    base = module.get_base_layer()
    module._pinned_base = (base.in_proj_weight, base.out_proj.get_base_layer().weight)


def _restore(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
    base = module.get_base_layer()
    in_proj, out_proj = module.__dict__.pop("_pinned_base")
    out_layer = base.out_proj.get_base_layer()
    del base.in_proj_weight
    base.register_parameter("in_proj_weight", in_proj)
    del out_layer.weight
    out_layer.register_parameter("weight", out_proj)


def keep_base_exact(model: nn.Module) -> None:
    """After each forward of a LoRA'd MHA, put back the frozen tensors peft replaced by (W + d) - d."""
    for module in model.modules():
        if isinstance(module, LoraMultiheadAttention):
            module.register_forward_pre_hook(_pin, with_kwargs=True)
            module.register_forward_hook(_restore, with_kwargs=True, always_call=True)


def lora_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA tensors (A, B and DoRA's magnitudes) among a model's trainable ones."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad and ".lora_" in name}


def dead_lora_tensors(detector: nn.Module, image_size: int) -> list[str]:
    """LoRA tensors that one backward pass does not reach (grad None), without touching any RNG stream."""
    return unreached(detector, lora_tensors(detector), image_size)


def check_gradients(detector: nn.Module, image_size: int, targets: str) -> None:
    dead = dead_lora_tensors(detector, image_size)
    if dead:
        raise UserError(f"target set {targets!r}: {len(dead)} of {len(lora_tensors(detector))} LoRA tensors never "
                        f"get a gradient (e.g. {dead[0]}): the forward pass does not call them "
                        "(nn.MultiheadAttention never calls out_proj.forward; target the attn module itself)")


def save_adapter(adapted: peft.PeftModel, folder: Path) -> Path:
    """peft's adapter format (adapter_model.safetensors + adapter_config.json); each file lands atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as tmp:
        adapted.save_pretrained(tmp)
        for path in sorted(Path(tmp).iterdir()):
            os.replace(path, folder / path.name)
    return folder / ADAPTER_FILE


def load_adapter(model: nn.Module, folder: str | Path) -> peft.PeftModel:
    """A saved adapter on a freshly built base model, with the base kept exact as in training."""
    adapted = peft.PeftModel.from_pretrained(model, str(folder))
    keep_base_exact(adapted)
    return adapted


class Lora(Method):
    """peft LoRA on a named target set: the update of each targeted weight is (alpha / r) B A."""

    name = "lora"
    title = "LoRA"
    takes = ("rank", "alpha", "dropout", "targets")
    change_file = f"{ADAPTER_DIR}/{ADAPTER_FILE}"
    use_dora: ClassVar[bool] = False

    def check_settings(self, settings: Any) -> None:
        TARGET_SETS.get(settings.targets)
        if not (settings.rank >= 1 and settings.alpha > 0):
            raise UserError(f"--rank {settings.rank} and --alpha {settings.alpha} must be positive")
        if not 0 <= settings.dropout < 1:
            raise UserError(f"--dropout {settings.dropout} must be in [0, 1)")

    def describe(self, settings: Any) -> str:
        return f"{self.title} on {settings.targets}"

    def attach(self, clip: nn.Module, settings: Any) -> peft.PeftModel:
        config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                 target_modules=target_regex(settings.targets), use_dora=self.use_dora)
        try:
            adapted = peft.get_peft_model(clip, config)
        except ValueError as exc:
            raise UserError(f"target set {settings.targets!r} matches no module: "
                            f"{str(exc).splitlines()[0]}") from None
        keep_base_exact(adapted)
        return adapted

    def encoder(self, adapted: nn.Module) -> nn.Module:
        return adapted.get_base_model()

    def trainable(self, adapted: nn.Module) -> dict[str, nn.Parameter]:
        return lora_tensors(adapted)

    def check_attached(self, detector: nn.Module, image_size: int, settings: Any) -> None:
        check_gradients(detector, image_size, settings.targets)

    def save(self, adapted: nn.Module, run: Path, settings: Any) -> Path:
        return save_adapter(adapted, run / ADAPTER_DIR)

    def load(self, clip: nn.Module, run: Path, settings: Any) -> nn.Module:
        return load_adapter(clip, run / ADAPTER_DIR)

    def merge(self, adapted: nn.Module) -> nn.Module:
        return adapted.merge_and_unload()


METHODS.register("lora", Lora())
