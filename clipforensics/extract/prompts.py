"""Prompt sets, looked up by name. Every prompt carries its class (0 real, 1 fake), so no stage
ever depends on the order in which prompts were written."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipforensics.core.errors import UserError

REAL, FAKE = 0, 1


@dataclass(frozen=True)
class PromptSet:
    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels) or set(self.labels) != {REAL, FAKE}:
            raise ValueError(f"prompt set {self.name!r} needs texts for both classes, one label per text")


def _make(name: str, real: list[str], fake: list[str]) -> PromptSet:
    return PromptSet(name, tuple(real + fake), (REAL,) * len(real) + (FAKE,) * len(fake))


PROMPT_SETS: dict[str, PromptSet] = {
    s.name: s
    for s in (
        _make("v1", ["Authentic"], ["AI-Generated"]),
        _make("v2", ["Authentic face"], ["AI-Generated face"]),
        _make(
            "bank",
            [
                "Authentic face",
                "a real photo of a person's face",
                "an unedited video frame of a face",
                "a genuine face",
                "a natural photograph of a human face",
            ],
            [
                "AI-Generated face",
                "a deepfake of a person's face",
                "a manipulated video frame of a face",
                "a face swapped by a computer",
                "a synthetic face with blending artifacts",
            ],
        ),
    )
}


def get_prompt_set(name: str) -> PromptSet:
    try:
        return PROMPT_SETS[name]
    except KeyError:
        raise UserError(f"unknown prompt set {name!r}; known: {', '.join(PROMPT_SETS)}") from None


def class_means(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit-norm mean prompt embedding per class, rows ordered [real, fake] by label, not by position."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    means = np.stack([unit[labels == c].mean(axis=0) for c in (REAL, FAKE)])
    return means / np.linalg.norm(means, axis=1, keepdims=True)
