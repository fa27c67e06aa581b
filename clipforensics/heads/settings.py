"""The heads stage's settings: light (no torch, sklearn) so fit_heads.py parses before importing the stage."""

from __future__ import annotations

from dataclasses import dataclass

from clipforensics.core.errors import UserError
from clipforensics.core.settings import option


@dataclass
class FitSettings:
    """Heads to fit on one cache. A fit needs a run folder; only listing the heads (no FitSettings) does not."""

    cache: str = option(None, "feature cache written by extract_features.py", required=True, metavar="FILE")
    heads: tuple[str, ...] = option(("logreg", "svm", "zeroshot-v2"), "heads to fit (comma list, or 'all')")
    out: str = option(None, "run folder: one sub-folder per head (required unless --list-heads)", metavar="DIR")
    overwrite: bool = option(False, "replace a run (the files fit_heads wrote) made from another cache or protocol")
    layer: str | None = option(None, "fit on stored block tokens instead of the final embedding: K, last, or "
                                     "concat:K,L (cache made with --layers)", metavar="SPEC", identity=True,
                               identity_if="layer")
    layer_sweep: bool = option(False, "fit the heads on every stored layer and write layer_sweep.{csv,md,json,png} "
                                      "(val AUC picks the layer, test AUC beside it)")

    def __post_init__(self) -> None:
        if not self.out:
            raise UserError("--out is required (the run folder) unless --list-heads")
