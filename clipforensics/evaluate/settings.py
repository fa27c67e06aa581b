"""The evaluator's settings: how a scores table is measured, and the report's own options.

Light on purpose (no matplotlib, scikit-learn or h5py), so evaluate.py answers `--help` and refuses a bad
option before the stage loads; the aggregator and threshold-rule choices come from their registries in
`measure.metrics`, which loads only numpy and pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipforensics.core.settings import option
from clipforensics.data.manifest import DataSettings
from clipforensics.measure.metrics import AGGREGATORS, THRESHOLD_RULES


@dataclass
class MeasureSettings:
    """How a scores table is measured: shared by the report and the matrix, so their numbers agree."""

    video_agg: str = option("mean", "video score from its frames", choices=tuple(AGGREGATORS))
    bootstrap: int = option(1000, "bootstrap resamples of videos for 95%% intervals (0: none, else at least 100)")
    bootstrap_seed: int = option(0, "seed of the bootstrap resampling", metavar="SEED", formerly="--seed")
    threshold_rule: str = option("eer", "how the validation split picks the threshold",
                                 choices=tuple(THRESHOLD_RULES))


@dataclass
class EvaluateSettings(MeasureSettings, DataSettings):
    """The evaluator; the data group reads external files' paths and finds frames for the error grid
    (data root default: the one recorded with the scores)."""

    out: str = option(None, "report folder", required=True, metavar="DIR")
    predictions: tuple[str, ...] = option((), "external prediction files (CSV or JSON records with path, score, "
                                               "label; optional video, split)", metavar="FILES")
    top_k: int = option(10, "videos listed in the error analysis")
    frame_budgets: tuple[str, ...] = option((), "frame budgets: also video AUC using only N evenly spread frames per "
                                                "test video, for each N (e.g. 1,2,4,8,16,all)", metavar="COUNTS",
                                            formerly="--frames-per-video")
    include: tuple[str, ...] = option((), "fold other analyses into this report, as written: a layer sweep's run "
                                          "folder (fit_heads.py --layer-sweep), a robustness report folder or a "
                                          "matrix folder (evaluate.py matrix)",
                                      metavar="DIR", spaced=True)
    overwrite: bool = option(False, "replace a report of other scores files in --out (the files evaluate.py wrote)")
    compare_to: str = option(None, "the run every other run is compared with (paired tests, Holm-adjusted p); "
                                   "default: the first run", metavar="NAME")
    all_pairs: bool = option(False, "compare every pair of runs instead (Holm over all pairs)")
    print_tables: bool = option(False, "also print the metrics tables (they are in report.html and metrics.md)",
                                flag="--print", execution_only=True)
