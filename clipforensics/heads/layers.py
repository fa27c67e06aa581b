"""Heads on stored block tokens: which blocks a fit reads (`--layer K`, `last`, `concat:K,L`) and the cache
seen through that choice.

A library below the heads stage and the layer sweep (studies/layer_sweep.py), which both fit on these views.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from clipforensics.core.errors import UserError
from clipforensics.data.cache import FeatureCache
from clipforensics.data.stored import StoredRows

PROMPT_HEADS = ("zeroshot-", "prompt-features")


def parse_layer_choice(spec: str, stored: list[int]) -> list[int]:
    """'K' | 'last' | 'concat:K,L' -> the stored blocks to read, refused by name when absent."""
    if not stored:
        raise UserError("this cache stores no block tokens; re-extract with --layers all (or e.g. 0,4,8)")
    text = spec[len("concat:"):] if spec.startswith("concat:") else spec
    try:
        keys = [max(stored) if part == "last" else int(part) for part in text.split(",") if part]
    except ValueError:
        raise UserError(f"--layer takes K, last or concat:K,L; got {spec!r}") from None
    if len(keys) > 1 and not spec.startswith("concat:"):
        raise UserError(f"--layer {spec}: write concat:{spec} to fit on several layers at once")
    if not keys:
        raise UserError(f"--layer {spec!r} names no layer; write K, last or concat:K,L")
    if len(set(keys)) < len(keys):
        raise UserError(f"--layer {spec}: a layer appears twice; concatenate distinct layers")
    missing = [k for k in keys if k not in stored]
    if missing:
        raise UserError(f"--layer {spec}: the cache stores layers {stored}, not {missing}")
    return keys


class JoinedRows:
    """Block tokens of several layers side by side (`concat:K,L`), read like one StoredRows: only the rows asked
    for, one layer after the other, never the layers' whole stack."""

    def __init__(self, parts: list[StoredRows]) -> None:
        self.parts = parts
        self.shape = (len(parts[0]), sum(part.shape[1] for part in parts))
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, idx: np.ndarray, dtype: Any = None) -> np.ndarray:
        """The rows `idx` of every part, joined along the columns (in `dtype`, converted as each part is read)."""
        out = np.empty((len(idx), self.shape[1]), dtype=self.parts[0].dtype if dtype is None else dtype)
        at = 0
        for part in self.parts:
            out[:, at:at + part.shape[1]] = part.read(idx, dtype)
            at += part.shape[1]
        return out


def layer_view(cache: FeatureCache, spec: str | None) -> FeatureCache:
    """The cache with its embeddings replaced by the chosen block tokens, still unread (prompts dropped: they live
    in the projected space, which intermediate tokens are not in)."""
    if spec is None:
        return cache
    keys = parse_layer_choice(spec, sorted(cache.layers))
    X = cache.layers[keys[0]] if len(keys) == 1 else JoinedRows([cache.layers[k] for k in keys])
    return dataclasses.replace(cache, embeddings=X, prompts={}, layers={})


def refuse_prompt_heads(names: list[str] | tuple[str, ...], spec: str) -> None:
    """Prompt heads compare with text embeddings in the projected space, which block tokens are not in."""
    prompt = [n for n in names if n.startswith(PROMPT_HEADS)]
    if prompt:
        raise UserError(f"{prompt[0]} needs the final (projected) embedding; with --layer {spec} use trained heads "
                        "(logreg, svm, ridge, real-only)")
