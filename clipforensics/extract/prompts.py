"""Prompt sets, looked up by name in `PROMPT_SETS`. Every prompt carries its class (0 real, 1 fake), so no
stage ever depends on the order in which prompts were written. A new set: `PROMPT_SETS.register(name,
prompt_set(name, real=[...], fake=[...]))`; `extract_features.py --prompt-sets` embeds it into the cache."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from clipforensics.core.registry import Registry

REAL, FAKE = 0, 1


@dataclass(frozen=True)
class PromptSet:
    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels) or set(self.labels) != {REAL, FAKE}:
            raise ValueError(f"prompt set {self.name!r} needs texts for both classes, one label per text")


def prompt_set(name: str, real: list[str], fake: list[str]) -> PromptSet:
    """A set from its real and fake prompts, labelled by class rather than by position."""
    return PromptSet(name, tuple(real + fake), (REAL,) * len(real) + (FAKE,) * len(fake))


PROMPT_SETS: Registry[PromptSet] = Registry("prompt set")
for _set in (
    prompt_set("v1", real=["Authentic"], fake=["AI-Generated"]),
    prompt_set("v2", real=["Authentic face"], fake=["AI-Generated face"]),
    prompt_set("bank", real=[
        "Authentic face",
        "a real photo of a person's face",
        "an unedited video frame of a face",
        "a genuine face",
        "a natural photograph of a human face",
    ], fake=[
        "AI-Generated face",
        "a deepfake of a person's face",
        "a manipulated video frame of a face",
        "a face swapped by a computer",
        "a synthetic face with blending artifacts",
    ]),
):
    PROMPT_SETS.register(_set.name, _set)


def no_text_tower(model: str) -> str:
    """How every stage names the reason it cannot use prompts with an image-only encoder."""
    return f"{model} has no text tower (an image-only encoder)"


def embeddable(names: tuple[str, ...], has_text: bool, model: str) -> tuple[str, ...]:
    """The prompt sets an extraction embeds: all asked for, or none (said in one line) without a text tower."""
    if has_text or not names:
        return names
    print(f"note: {no_text_tower(model)}: the cache gets no prompt embeddings (no zero-shot or prompt heads)",
          file=sys.stderr)
    return ()


def class_means(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit-norm mean prompt embedding per class, rows ordered [real, fake] by label, not by position."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    means = np.stack([unit[labels == c].mean(axis=0) for c in (REAL, FAKE)])
    return means / np.linalg.norm(means, axis=1, keepdims=True)
