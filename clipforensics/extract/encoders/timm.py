"""timm image towers (`--model timm:NAME`): DINOv2, DINOv3 and the other ViTs timm lists, image only.

The embedding is timm's pooled feature (forward_features, then forward_head(pre_logits=True): the model is built
with num_classes=0), the pixels are timm's own eval preprocessing (`resolve_model_data_config`), and weights
come from a local checkpoint file (timm's own name conversion applies, so DINOv2's released .pth files load),
timm's cache (`--pretrained TAG`, e.g. lvd142m, read offline where the hub cannot be reached) or a seeded random
init. There is no text tower: stages that need one skip or refuse (`LoadedModel.has_text`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import timm
import timm.data
import torch
from torch import nn
from torchvision.transforms import Compose, Normalize, ToTensor

from clipforensics.core.errors import UserError
from clipforensics.extract.encoders import ENCODERS, Encoder
from clipforensics.extract.encoders.weights import (RANDOM, checkpoint_file, file_identity, first_line, hub_offline,
                                                    offline_wanted, random_identity, tag_identity, warn_random)
from clipforensics.extract.models import LoadedModel, cast_model, choose_precision, resolve_device, resolve_precision
from clipforensics.extract.settings import ModelSettings

PREFIX = "timm"
TENSOR_STEPS = ("ToTensor", "MaybeToTensor")
WRAPPER_PREFIX = "visual."  # a merged fine-tuning checkpoint holds TimmTower's state_dict
TINY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny-vit": ("vit_tiny_patch16_224", {"img_size": 64, "patch_size": 8, "depth": 2, "embed_dim": 64,
                                          "num_heads": 2}),
}
"""This package's own small timm configs (`timm:tiny-vit`): an architecture of timm's and the arguments that
shrink it, for tests and trial runs (like open_clip's tiny-vit config)."""


class TimmTower(nn.Module):
    """A timm model behind open_clip's image-side interface: `.visual` is the tower, `encode_image` the
    embedding, so heads, layers, perturbations and fine-tuning methods reach it as they reach CLIP's."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)


def architecture(model: str) -> tuple[str, dict[str, Any]]:
    """timm's architecture name and build arguments for `timm:NAME`; an unknown name is one line."""
    name = model[len(PREFIX) + 1:]
    if name in TINY_CONFIGS:
        return TINY_CONFIGS[name]
    if name not in timm.list_models():
        raise UserError(f"unknown model {model!r}: timm has no architecture {name!r} (e.g. "
                        f"timm:vit_base_patch14_dinov2, timm:vit_base_patch16_dinov3; this package's timm:tiny-vit)")
    return name, {}


def known_tags(arch: str) -> list[str]:
    return [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]


def _create(arch: str, kwargs: Mapping[str, Any], settings: ModelSettings, tag: str | None,
            offline: bool) -> nn.Module:
    """timm's model without a classifier, seeded; a tag that is not in the local cache is one line."""
    with torch.random.fork_rng(devices=[]), hub_offline(offline):
        torch.manual_seed(settings.init_seed)
        try:
            return timm.create_model(f"{arch}.{tag}" if tag else arch, pretrained=tag is not None, num_classes=0,
                                     cache_dir=settings.weights_dir, **kwargs)
        except (RuntimeError, OSError, ValueError) as exc:
            if tag is None:
                raise
            raise UserError(f"weights for {settings.model} / {tag} are not in timm's local cache and cannot be "
                            f"downloaded here ({type(exc).__name__}): copy them into --weights-dir (timm's cache_dir) "
                            f"or pass a checkpoint file with --pretrained PATH") from None


def _state_dict(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors in timm's names: the file read as timm reads it, a fine-tuning run's merged
    TimmTower unwrapped, timm's own conversion for the architecture (DINOv2's, CLIP's), classifier dropped."""
    from timm.models import load_state_dict

    state = load_state_dict(str(path))
    if state and all(k.startswith(WRAPPER_PREFIX) for k in state):
        state = {k[len(WRAPPER_PREFIX):]: v for k, v in state.items()}
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        state = convert(state, model)
    classifiers = model.pretrained_cfg.get("classifier") or ()
    for name in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state = {k: v for k, v in state.items() if not k.startswith(f"{name}.")}
    return state


def load_checkpoint(model: nn.Module, path: Path, what: str) -> None:
    """Every tensor of the model from the file, none left over: a checkpoint of another model is one line."""
    try:
        missing, unexpected = model.load_state_dict(_state_dict(path, model), strict=False)
    except Exception as exc:  # a user's checkpoint file can fail in any library's own way
        raise UserError(f"cannot load checkpoint {path} for {what} (truncated, or weights of another model?): "
                        f"{first_line(exc)}") from None
    if missing or unexpected:
        names = [f"missing {k}" for k in missing[:2]] + [f"unexpected {k}" for k in unexpected[:2]]
        raise UserError(f"checkpoint {path} does not fit {what}: {len(missing)} tensors missing, {len(unexpected)} "
                        f"unexpected (e.g. {', '.join(names)}); weights of another model?")


def _weights(arch: str, settings: ModelSettings) -> tuple[Path | None, str | None, dict[str, Any]]:
    """(checkpoint file, timm tag, identity record) of `--pretrained`; exactly one of file and tag, or neither."""
    if settings.pretrained.lower() == RANDOM:
        return None, None, random_identity(settings.init_seed)
    path = checkpoint_file(settings.pretrained)
    if path is not None:
        return path, None, file_identity(path)
    if settings.pretrained not in known_tags(arch):
        tags = ", ".join(known_tags(arch)) or "none (use a checkpoint file)"
        raise UserError(f"{settings.pretrained!r} is not a pretrained tag of {settings.model} in timm (known: {tags}) "
                        f"nor a checkpoint file; 'none' gives random weights")
    return None, settings.pretrained, tag_identity(settings.pretrained)


def pixel_config(model: nn.Module) -> dict[str, Any]:
    """timm's eval data config, at the resolution the model was built for (timm's tables give the pretrained one;
    a model built with another img_size has position embeddings for that one)."""
    config = dict(timm.data.resolve_model_data_config(model))
    built = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if built is not None:
        config["input_size"] = (3, *tuple(built))
    return config


def preprocess_of(config: Mapping[str, Any]) -> Compose:
    """timm's eval transform with its tensor step as torchvision's ToTensor (the same on a PIL image), so
    `LoadedModel` cuts it where PIL work ends, as it cuts open_clip's."""
    steps = list(timm.data.create_transform(**config, is_training=False).transforms)
    cut = next(i for i, t in enumerate(steps) if type(t).__name__ in TENSOR_STEPS)
    return Compose([*steps[:cut], ToTensor(), Normalize(config["mean"], config["std"])])


def identity_of(settings: ModelSettings, model: nn.Module, config: Mapping[str, Any], precision: str) -> dict[str, Any]:
    """What a cache records of the tower beyond its weights: the same keys open_clip's caches carry."""
    return {"model": settings.model, "init_seed": settings.init_seed, "image_size": int(config["input_size"][-1]),
            "mean": [float(v) for v in config["mean"]], "std": [float(v) for v in config["std"]],
            "interpolation": str(config["interpolation"]),
            "resize_mode": f"timm {config.get('crop_mode', 'center')} crop, crop_pct {config['crop_pct']}",
            "precision": precision, "embed_dim": int(model.num_features)}


def load(settings: ModelSettings, device: str, precision: str) -> LoadedModel:
    """A timm tower ready for inference: weights, timm's preprocessing, precision, identity."""
    arch, kwargs = architecture(settings.model)
    path, tag, identity = _weights(arch, settings)
    torch_device = resolve_device(device)
    resolve_precision(precision, torch_device)  # a bad choice fails before the model is built
    if path is None and tag is None:
        warn_random(settings.model, settings.init_seed, "pretrained")
    visual = _create(arch, kwargs, settings, tag, tag is not None and offline_wanted())
    if path is not None:
        load_checkpoint(visual, path, settings.model)
    model = TimmTower(visual).eval().requires_grad_(False)
    config = pixel_config(visual)
    choice = choose_precision(precision, torch_device, settings.model, visual, int(config["input_size"][-1]))
    cast_model(model, torch_device, choice.precision)
    identity.update(identity_of(settings, visual, config, choice.precision))
    return LoadedModel(model, preprocess_of(config), None, identity, torch_device, choice.precision, choice.reason)


ENCODERS.register(PREFIX, Encoder(PREFIX, load))
