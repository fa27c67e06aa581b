"""open_clip models (the default encoder: `--model ViT-B-32`, `ViT-L-14`, PE-Core-*, *-SigLIP2, this package's
tiny-vit): image and text towers, weights from a tag, a local file, or a seeded random init.

The package's own configs (e.g. `tiny-vit`) are registered with open_clip the first time a model is looked up or
built (never at import), so tests and the demo use the same code path as ViT-B-32 with real weights.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any, Iterator

import open_clip
import torch

from clipforensics.core.errors import UserError
from clipforensics.extract.encoders import DEFAULT, ENCODERS, Encoder
from clipforensics.extract.encoders.weights import (RANDOM, checkpoint_file, file_identity, first_line, hub_offline,
                                                    offline_wanted, random_identity, tag_identity, warn_random)
from clipforensics.extract.models import LoadedModel, cast_model, choose_precision, resolve_device, resolve_precision
from clipforensics.extract.settings import ModelSettings

CONFIG_DIR = Path(__file__).parent.parent / "configs"


@functools.cache
def _add_package_configs() -> None:
    """Register this package's configs with open_clip, once per process, on first use."""
    open_clip.add_model_config(CONFIG_DIR)


def list_models() -> list[str]:
    _add_package_configs()
    return open_clip.list_models()


def model_config(name: str) -> dict[str, Any] | None:
    """open_clip's config of model `name` (this package's configs included)."""
    _add_package_configs()
    return open_clip.get_model_config(name)


def _weights_source(settings: ModelSettings) -> tuple[str | None, dict[str, Any]]:
    """What to pass to open_clip as `pretrained`, and how the cache will record it."""
    name, pretrained = settings.model, settings.pretrained
    if name not in list_models():
        raise UserError(f"unknown model {name!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14 "
                        f"(and this package's tiny-vit); timm's towers are timm:NAME")
    if pretrained.lower() == RANDOM:
        return None, random_identity(settings.init_seed)
    path = checkpoint_file(pretrained)
    if path is not None:
        return str(path), file_identity(path)
    if not open_clip.get_pretrained_cfg(name, pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none (use a checkpoint file)"
        raise UserError(f"{pretrained!r} is not a pretrained tag of {name} (known: {tags}) nor a checkpoint file")
    return pretrained, tag_identity(pretrained)


def tag_preprocessing(name: str) -> dict[str, Any]:
    """The image preprocessing every pretrained tag of `name` shares (open_clip keeps it with the tag, not the
    model): a checkpoint file of PE-Core or SigLIP2 must be read with its 0.5 mean and squash resize, not CLIP's
    defaults. Empty where the tags disagree or there are none; CLIP's tags all carry the defaults."""
    configs = [open_clip.get_pretrained_cfg(name, tag) for tag in open_clip.list_pretrained_tags_by_model(name)]
    keys = ("mean", "std", "interpolation", "resize_mode")
    shared = {k: configs[0].get(k) for k in keys} if configs else {}
    if not shared or any({k: c.get(k) for k in keys} != shared for c in configs):
        return {}
    return {f"image_{k}": v for k, v in shared.items() if v is not None}


def _text_sequence_first(model: torch.nn.Module) -> None:
    """Run the text tower's blocks sequence-first: with batch-first inputs PyTorch's attention copies
    its in-projection weight once per token (77x per layer), which made prompt encoding cost as much
    as hundreds of image forwards on the CPU. Outputs are unchanged (tests/test_models.py)."""
    transformer = getattr(model, "transformer", None)
    blocks = getattr(transformer, "resblocks", [])
    if not blocks or not all(isinstance(getattr(b, "attn", None), torch.nn.MultiheadAttention) for b in blocks):
        return
    transformer.batch_first = False
    for block in blocks:
        block.attn.batch_first = False


class _RandomInitNotice(logging.Filter):
    """Drops open_clip's own "No pretrained weights loaded" line: `weights.warn_random` has said it, with the seed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _said_once() -> Iterator[None]:
    root, notice = logging.getLogger(), _RandomInitNotice()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def _create(settings: ModelSettings, pretrained: str | None, is_tag: bool, offline: bool) -> tuple[Any, Any]:
    """open_clip's model and image transform, seeded; a checkpoint or tag that cannot load is one line."""
    with torch.random.fork_rng(devices=[]), hub_offline(offline), _said_once():
        torch.manual_seed(settings.init_seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                settings.model, pretrained=pretrained, cache_dir=settings.weights_dir,
                **({} if is_tag else tag_preprocessing(settings.model)))
        except Exception as exc:  # a user's checkpoint file can fail in any library's own way
            if not is_tag:
                raise UserError(f"cannot load checkpoint {pretrained} for {settings.model} (truncated, or weights of "
                                f"another model?): {first_line(exc)}") from None
            if not isinstance(exc, (RuntimeError, OSError)):
                raise
            raise UserError(
                f"weights for {settings.model} / {settings.pretrained} are not in the local cache and cannot be "
                f"downloaded here: copy them into --weights-dir (open_clip's cache_dir) or pass a checkpoint file "
                f"with --pretrained PATH") from exc
    return model, preprocess


def _identity(settings: ModelSettings, model: torch.nn.Module, precision: str) -> dict[str, Any]:
    """What a cache records of the model beyond its weights (unchanged since the first caches: they stay valid)."""
    pp = model.visual.preprocess_cfg
    image_size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    projection = getattr(model, "text_projection", None)  # absent in PE-Core and SigLIP2: their config has it
    return {"model": settings.model, "init_seed": settings.init_seed, "image_size": int(image_size),
            "mean": [float(v) for v in pp["mean"]], "std": [float(v) for v in pp["std"]],
            "interpolation": pp.get("interpolation", "bicubic"), "resize_mode": pp.get("resize_mode", "shortest"),
            "precision": precision, "embed_dim": int(projection.shape[1]) if projection is not None
            else int((model_config(settings.model) or {}).get("embed_dim", -1))}


def _tokenizer(settings: ModelSettings, offline: bool) -> Any:
    """open_clip's tokenizer; one that lives on the hub (SigLIP2's Gemma) and is not in its cache is one line."""
    with hub_offline(offline):
        try:
            return open_clip.get_tokenizer(settings.model, cache_dir=settings.weights_dir)
        except (OSError, ImportError) as exc:
            raise UserError(f"the tokenizer of {settings.model} is not in the local hugging face cache and cannot be "
                            f"downloaded here ({type(exc).__name__}): copy it into the hub cache (HF_HOME)") from None


def load(settings: ModelSettings, device: str, precision: str) -> LoadedModel:
    """Build the model; a tag that cannot be had offline fails fast with how to supply the weights."""
    pretrained, identity = _weights_source(settings)
    torch_device = resolve_device(device)
    resolve_precision(precision, torch_device)  # a bad choice fails before the model is built
    is_tag = identity["weights_kind"] == "tag"
    offline = is_tag and offline_wanted()
    if pretrained is None:
        warn_random(settings.model, settings.init_seed, "CLIP")
    model, preprocess = _create(settings, pretrained, is_tag, offline)
    model.eval().requires_grad_(False)
    _text_sequence_first(model)
    image_size = _identity(settings, model, "fp32")["image_size"]
    choice = choose_precision(precision, torch_device, settings.model, model.visual, image_size)
    cast_model(model, torch_device, choice.precision)
    identity.update(_identity(settings, model, choice.precision))
    tokenizer = _tokenizer(settings, offline)
    return LoadedModel(model, preprocess, tokenizer, identity, torch_device, choice.precision, choice.reason)


ENCODERS.register(DEFAULT, Encoder(DEFAULT, load))
