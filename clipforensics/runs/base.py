"""A run folder read (`Run`) and what every kind of run folder must say about itself (`RunKind`).

A kind is registered once in `kinds.py`; `detect.py` rebuilds a detector and the studies score cached embeddings
through it alone, so a new kind of run (another fine-tuning method) is one registration, not one edit per reader.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from clipforensics.core.errors import UserError
from clipforensics.data.cache import FeatureCache, check_identity
from clipforensics.frames.crops import CropRecipe
from clipforensics.data.scores import SCORES
from clipforensics.runs.records import cache_attrs, crop_recipe, validation_threshold

if TYPE_CHECKING:  # torch and the model code load only when a tower is rebuilt (detect.py), not to score a run
    import torch

    from clipforensics.extract.models import LoadedModel

Scorer = Callable[[np.ndarray], np.ndarray]  # float32 embeddings -> probability of fake (float64)


@dataclass(frozen=True)
class RunKind(ABC):
    """One kind of run folder: its files, its record, and how it scores embeddings and rebuilds its tower.

    The methods take the `Run` read from a folder; subclasses fill in the kind's own parts."""

    title: str  # in messages: "fitted head", "LoRA run"
    marker: str  # the record file that makes a folder this kind of run
    files: tuple[str, ...]  # every file a finished run holds, record first
    required: str  # the record's key without which it is no run record
    fix: str  # what remakes a damaged run of this kind
    no_copies: str  # how to get a scored cache with perturbed copies for this kind of run
    nested: bool  # whether runs of this kind sit side by side in one run folder (a fit_heads run's heads)
    base_title: str  # what the cache the run was made from is called: "cache", "base cache"

    @abstractmethod
    def base(self, run: "Run") -> tuple[str | None, dict[str, Any]]:
        """(the path of the cache the run was made from, the identity it recorded of it)."""

    @abstractmethod
    def scorer(self, run: "Run") -> Scorer:
        """The run's saved head as a function of embeddings, scoring them as the run scored its rows."""

    @abstractmethod
    def scored_cache(self, run: "Run") -> str:
        """The cache whose embeddings `scorer` takes (a tower's re-extracted one; a head's own)."""

    @abstractmethod
    def check_cache(self, run: "Run", cache: FeatureCache) -> None:
        """Refuse a cache at `scored_cache`'s path that is not the one the run scored."""

    @abstractmethod
    def precision(self, run: "Run", attrs: dict[str, Any], device: torch.device) -> str:
        """The precision the run scored its frames in, as it resolves on `device`."""

    @abstractmethod
    def tower(self, run: "Run", attrs: dict[str, Any], device: str, precision: str) -> LoadedModel:
        """The image tower whose embeddings `scorer` takes, rebuilt and checked against the base cache."""

    def notes(self, run: "Run") -> list[str]:
        """Lines a reader prints about the run beside its scores (none unless the kind has some)."""
        return []


@dataclass(frozen=True)
class Run:
    """One run folder, its kind and its record (read and validated by `kinds.open_run` / `kinds.runs_in`)."""

    folder: Path
    kind_name: str
    kind: RunKind
    record: dict[str, Any]

    @property
    def name(self) -> str:
        """The scorer's own name: the head's, else the folder's."""
        return str(self.record.get("name", self.folder.name))

    @property
    def label(self) -> str:
        """A name that tells runs apart in a table: a nested run is known with its run folder's name."""
        return f"{self.folder.parent.name}/{self.folder.name}" if self.kind.nested else self.folder.name

    @property
    def frames_per_video(self) -> int | None:
        """The protocol's cap on frames a video, applied after sampling as the run's rows were."""
        return (self.record.get("protocol") or {}).get("frames_per_video")

    def attrs(self) -> dict[str, Any]:
        """The attributes of the cache the run was made from, checked to be the cache it recorded."""
        cache, identity = self.kind.base(self)
        attrs = cache_attrs(cache, self.folder)
        check_identity(attrs, identity, what=f"the {self.kind.base_title} of {self.folder} ({cache})")
        return attrs

    def threshold(self) -> tuple[float, str]:
        """EER on the run's validation rows, as the evaluator decides."""
        return validation_threshold(self.folder / SCORES)

    def crop(self, attrs: dict[str, Any]) -> tuple[CropRecipe | None, str]:
        """The face-crop recipe of the run's data root (None: frames used whole) and a note saying so."""
        return crop_recipe(attrs, self.folder)

    @abstractmethod
    def scorer(self) -> Scorer:
        return self.kind.scorer(self)

    @abstractmethod
    def scored_cache(self) -> str:
        return self.kind.scored_cache(self)

    @abstractmethod
    def check_cache(self, cache: FeatureCache) -> None:
        self.kind.check_cache(self, cache)


def missing_files(run: Path, kind: RunKind) -> None:
    """A run folder must hold every file of its kind before anything in it is scored."""
    missing = [f for f in kind.files if not (run / f).is_file()]
    if missing:
        raise UserError(f"{run}: missing {', '.join(missing)}; {kind.fix}")
