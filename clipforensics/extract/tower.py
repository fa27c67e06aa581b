"""A run's image tower rebuilt from the attributes of the cache it was made from: the one place that turns a
cache's record back into model settings, and checks that the model rebuilt is the one the cache records."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch

from clipforensics.core.errors import UserError
from clipforensics.core.settings import from_dict
from clipforensics.data.cache import MODEL_IDENTITY_KEYS, check_identity
from clipforensics.extract.encoders import load_model
from clipforensics.extract.models import LoadedModel, cast_model
from clipforensics.extract.settings import ModelSettings

# The pixels the model sees: the rebuilt preprocessing must match the cache's (means compared to 6 decimals).
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def model_settings(attrs: Mapping[str, Any], pretrained: str | None = None, what: str = "the cache") -> ModelSettings:
    """The model settings a cache was extracted with (its `settings` record, with the model, seed and weights its
    attributes name); `pretrained` replaces the weights, e.g. by a merged checkpoint."""
    recorded = (attrs.get("settings") or {}).get("model")
    if not isinstance(recorded, dict):
        raise UserError(f"{what} records no model settings; re-extract it")
    return dataclasses.replace(from_dict(ModelSettings, recorded), model=attrs["model"],
                               init_seed=int(attrs["init_seed"]), pretrained=pretrained or attrs["pretrained"])


def check_model(loaded: LoadedModel, attrs: Mapping[str, Any], what: str) -> None:
    """The rebuilt model must be the cache's: same weights (fingerprint) and the same image preprocessing."""
    check_identity(loaded.identity, {k: attrs[k] for k in MODEL_IDENTITY_KEYS if k in attrs}, what=what)
    diffs = [f"{k}: {loaded.identity.get(k)!r} != {attrs[k]!r}" for k in PREPROCESS_KEYS
             if k in attrs and _close(loaded.identity.get(k)) != _close(attrs[k])]
    if diffs:
        raise UserError(f"{what} preprocesses images otherwise than its cache ({'; '.join(diffs)})")


def _close(value: Any) -> Any:
    return [round(float(v), 6) for v in value] if isinstance(value, (list, tuple)) else value


def load_tower(attrs: Mapping[str, Any], device: str, precision: str, source: str) -> LoadedModel:
    """The model a cache was extracted with, loaded and checked against the cache (`source`, the run or cache it
    is rebuilt for, names it in refusals)."""
    loaded = load_model(model_settings(attrs, what=f"the cache of {source}"), device, precision)
    check_model(loaded, attrs, f"the model rebuilt for {source}")
    return loaded


def check_weights(attrs: Mapping[str, Any], run: Path) -> None:
    """A cache extracted from a weights file can be rebuilt only while that file is there."""
    if attrs.get("weights_kind") == "file" and not Path(str(attrs["pretrained"])).is_file():
        raise UserError(f"cannot rebuild {run}: the weights file {attrs['pretrained']} it was trained with is missing")


def loaded_with(loaded: LoadedModel, model: torch.nn.Module, precision: str) -> LoadedModel:
    """The same LoadedModel around another (merged) model, cast the way load_model casts for `precision`."""
    cast_model(model, loaded.device, precision).eval().requires_grad_(False)
    return dataclasses.replace(loaded, model=model, precision=precision,
                               identity={**loaded.identity, "precision": precision})
