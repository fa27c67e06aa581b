"""The studies' settings (matrix, methods, robustness): light, so evaluate.py parses before importing a study."""

from __future__ import annotations

from dataclasses import dataclass

from clipforensics.core.errors import UserError
from clipforensics.core.settings import option
from clipforensics.evaluate.settings import MeasureSettings


@dataclass
class MatrixSettings(MeasureSettings):
    cache: str = option(None, "feature cache written by extract_features.py (the primary data set: its "
                              "manipulations are rows and columns)", required=True, metavar="FILE")
    heads: tuple[str, ...] = option(("logreg",), "the scikit-learn head fitted for every cell, as fit_heads.py "
                                                 "--heads names it (exactly one)", metavar="HEAD", formerly="--head")
    out: str = option(None, "output folder", required=True, metavar="DIR")
    train_cache: tuple[str, ...] = option(
        (), "cache of another data set that is also a training source (a row, trained on all its manipulations "
            "with the same protocol options) and a column (its protocol's test split); repeat or comma list",
        metavar="FILE")

    def __post_init__(self) -> None:
        if len(self.heads) != 1 or self.heads[0] == "all":
            raise UserError(f"evaluate.py matrix fits exactly one head for every cell, got --heads "
                            f"{','.join(self.heads) or 'nothing'}; fit_heads.py --heads fits several")

    @property
    def head(self) -> str:
        """The one head of every cell."""
        return self.heads[0]


@dataclass
class MethodsSettings(MeasureSettings):
    out: str = option(None, "report folder", required=True, metavar="DIR")
    compare_to: str = option("lora", "the run every other run is compared with (paired bootstrap, DeLong): a run's "
                                     "name, or a fine-tuning method (its run)", metavar="NAME", formerly="--baseline")
    overwrite: bool = option(False, "replace a method comparison of other runs in --out (the files it wrote)")


@dataclass
class RobustnessSettings(MeasureSettings):
    out: str = option(None, "report folder", required=True, metavar="DIR")
    overwrite: bool = option(False, "replace a robustness report of other runs in --out (the files it wrote)")
