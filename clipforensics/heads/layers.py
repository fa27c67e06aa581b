"""Heads on stored block tokens: which blocks a fit reads (`--layer K`, `last`, `concat:K,L`) and the cache
seen through that choice.

A library below the heads stage and the layer sweep (studies/layer_sweep.py), which both fit on these views.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from clipforensics.core.errors import UserError
from clipforensics.data.cache import FeatureCache

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


def layer_view(cache: FeatureCache, spec: str | None) -> FeatureCache:
    """The cache with its embeddings replaced by the chosen block tokens (prompts dropped: they live in
    the projected space, which intermediate tokens are not in)."""
    if spec is None:
        return cache
    keys = parse_layer_choice(spec, sorted(cache.layers))
    X = cache.layers[keys[0]] if len(keys) == 1 else np.concatenate([cache.layers[k] for k in keys], axis=1)
    return dataclasses.replace(cache, embeddings=X, prompts={}, layers={})


def refuse_prompt_heads(names: list[str] | tuple[str, ...], spec: str) -> None:
    """Prompt heads compare with text embeddings in the projected space, which block tokens are not in."""
    prompt = [n for n in names if n.startswith(PROMPT_HEADS)]
    if prompt:
        raise UserError(f"{prompt[0]} needs the final (projected) embedding; with --layer {spec} use trained heads "
                        "(logreg, svm, ridge, real-only)")
