"""Encoders: the libraries an image tower can come from, chosen by the prefix of `--model`.

`--model ViT-B-32` is open_clip's (the default: a name without a registered prefix); `--model timm:NAME` is
timm's. An encoder is one module in this package with one `ENCODERS.register(prefix, Encoder(...))`; every stage
loads its model through `load_model` and never asks which library it came from (a stage that needs a text tower
asks `LoadedModel.has_text`).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from clipforensics.core.registry import Registry
from clipforensics.extract.models import LoadedModel
from clipforensics.extract.settings import ModelSettings

DEFAULT = "open_clip"


@dataclass(frozen=True)
class Encoder:
    """How one library's models are built: `load(settings, device, precision)` does all of it (weights, the
    library's own preprocessing, precision, identity)."""

    name: str
    load: Callable[[ModelSettings, str, str], LoadedModel]


ENCODERS: Registry[Encoder] = Registry("encoder")


def encoder_of(model: str) -> Encoder:
    """The encoder named by `model`'s prefix (`timm:NAME`); a name without a registered prefix is open_clip's."""
    prefix, sep, _ = model.partition(":")
    return ENCODERS.get(prefix) if sep and prefix in ENCODERS else ENCODERS.get(DEFAULT)


def load_model(settings: ModelSettings, device: str = "cpu", precision: str = "fp32") -> LoadedModel:
    """Build the model with its encoder; a tag that cannot be had offline fails fast with how to supply it."""
    return encoder_of(settings.model).load(settings, device, precision)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
