"""LayerNorm tuning (`--method layernorm`), after GenD (Yermakov et al., WACV 2026; github.com/yermandy/GenD):
only the image tower's LayerNorm weights and biases train, here ln_pre, ln_post and each block's ln_1 and ln_2
(GenD's `unfreeze_layers=["pre_layrnorm", "layer_norm1", "layer_norm2", "post_layernorm"]` on the HF CLIP vision
model, src/exp/wacv_rebuttal.py; ~0.03 % of the parameters on ViT-L/14, README).

GenD's other ingredients, as options:
- L2-normalised features with a linear head: `--objective linear` here is GenD's `Head.NLinear` (a linear layer
  on the L2-normalised feature, src/heads/head.py `LinearProbe(normalize_inputs=True)`); `--objective prompt` is a
  cosine head on the same normalised feature. GenD normalises the vision model's pooled output; this tower's
  feature is open_clip's `encode_image` output, after the (frozen) projection.
- Wang & Isola's alignment and uniformity (arXiv 2005.10242) on the L2-normalised features of each batch, as
  GenD computes them (src/losses/unifalign.py, added to the cross-entropy in src/loss.py):
  `--alignment-weight` times the mean of ||z_i - z_j||^2 over same-label pairs i < j, and `--uniformity-weight`
  times log(mean over pairs i < j of exp(-2 ||z_i - z_j||^2)), the mean clamped at 1e-6 first. GenD's full
  configuration ("wacv-LN+L2+UnAl") uses uniformity 0.5 and alignment 0.1; 0 turns a term off (the default).

The change is the LayerNorm tensors under open_clip's own names (layernorm.safetensors); merging is the model
itself, its LayerNorms replaced.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.lora.methods.base import METHODS, Method


def alignment(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between unit features of the same label (pairs i < j); 0 without such a pair."""
    same = (labels[:, None] == labels[None, :]).triu(diagonal=1)
    pairs = torch.nonzero(same, as_tuple=False)
    if len(pairs) == 0:
        return z.sum() * 0.0
    return (z[pairs[:, 0]] - z[pairs[:, 1]]).norm(p=2, dim=1).pow(2).mean()


def uniformity(z: torch.Tensor, t: float = 2.0, floor: float = 1e-6) -> torch.Tensor:
    """log of the mean Gaussian potential exp(-t ||z_i - z_j||^2) over pairs i < j (lower: more uniform); 0 for
    a batch of one (no pair)."""
    if len(z) < 2:
        return z.sum() * 0.0
    return torch.pdist(z, p=2).pow(2).mul(-t).exp().mean().clamp(min=floor).log()


def layernorm_tensors(clip: nn.Module) -> dict[str, nn.Parameter]:
    """Weights and biases of every LayerNorm of the image tower, by open_clip's parameter names."""
    return {f"visual.{name}.{kind}": p for name, module in clip.visual.named_modules()
            if isinstance(module, nn.LayerNorm) for kind, p in module.named_parameters(recurse=False)}


class LayerNormTuning(Method):
    """The image tower's LayerNorm affine parameters train, nothing else of the tower."""

    name = "layernorm"
    title = "LayerNorm tuning"
    takes = ("uniformity_weight", "alignment_weight")
    change_file = "layernorm.safetensors"

    def check_settings(self, settings: Any) -> None:
        if settings.uniformity_weight < 0 or settings.alignment_weight < 0:
            raise UserError(f"--uniformity-weight {settings.uniformity_weight} and --alignment-weight "
                            f"{settings.alignment_weight} must be non-negative")

    def attach(self, clip: nn.Module, settings: Any) -> nn.Module:
        for p in layernorm_tensors(clip).values():
            p.requires_grad_(True)
        return clip

    def trainable(self, adapted: nn.Module) -> dict[str, nn.Parameter]:
        return layernorm_tensors(adapted)

    def extra_loss(self, adapted: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor,
                   settings: Any) -> torch.Tensor | None:
        terms = [(settings.uniformity_weight, lambda z: uniformity(z)),
                 (settings.alignment_weight, lambda z: alignment(z, labels))]
        if not any(weight for weight, _ in terms):
            return None
        z = F.normalize(embeddings.float(), p=2, dim=1)
        return sum(weight * term(z) for weight, term in terms if weight)

    def load_state(self, adapted: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        tensors = layernorm_tensors(adapted)
        if set(state) != set(tensors):
            raise ValueError(f"saved LayerNorm tensors do not match the model's ({len(state)} != {len(tensors)})")
        with torch.no_grad():
            for name, p in tensors.items():
                p.copy_(state[name])

    def merge(self, adapted: nn.Module) -> nn.Module:
        return adapted


METHODS.register("layernorm", LayerNormTuning())
