"""Cross-manipulation matrix: train on real + one manipulation, test on every manipulation (DeepfakeBench's table).

Rows are training manipulations plus "all others" (for each test manipulation, train on every
other one); columns are test manipulations. One cache, one head, seconds per cell.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from clipforensics.core.io import write_csv, write_json
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.heads.fit import features
from clipforensics.heads.heads import fit_head, resolve_heads
from clipforensics.evaluate.metrics import frame_video_auc
from clipforensics.data.protocol import ProtocolSettings, assign_splits
from clipforensics.report.figures import plot_matrix
from clipforensics.core.settings import option, to_dict

ALL_OTHERS = "all others"


@dataclass
class MatrixSettings:
    cache: str = option(None, "feature cache written by extract_features.py", required=True, metavar="FILE")
    head: str = option("logreg", "head fitted for every cell")
    out: str = option(None, "output folder", required=True, metavar="DIR")
    video_agg: str = option("mean", "video score from its frames", choices=("mean", "median", "max"))


def _cells(cache: FeatureCache, head: str, base: ProtocolSettings, train: tuple[str, ...],
           tests: list[str], row: str, agg: str) -> list[dict]:
    protocol = replace(base, train_fakes=train, test_fakes=tuple(tests))
    rows = assign_splits(cache.manifest, protocol)
    fitted = fit_head(head, cache.prompts, features(cache, rows, "train"), features(cache, rows, "val")).head
    test = rows[rows["split"] == "test"].copy()
    test["score"] = fitted.predict_proba(cache.embeddings[test.index.to_numpy()].astype("float32"))
    cells = []
    for manip in tests:
        part = test[(test["label"] == 0) | (test["manipulation"] == manip)]
        frame_auc, video_auc = frame_video_auc(part, agg)
        videos = part.drop_duplicates("video")
        cells.append({"train": row, "test": manip, "frame_auc": frame_auc, "video_auc": video_auc,
                      "real_videos": int((videos["label"] == 0).sum()),
                      "fake_videos": int((videos["label"] == 1).sum())})
    return cells


def cross_manipulation(settings: MatrixSettings, base: ProtocolSettings) -> pd.DataFrame:
    cache = read_cache(settings.cache)
    resolve_heads((settings.head,), cache.prompts)
    manips = sorted(cache.manifest.loc[cache.manifest["label"] == 1, "manipulation"].unique())
    jobs = [((m,), manips, m) for m in manips]
    if len(manips) > 2:
        jobs += [(tuple(o for o in manips if o != m), [m], ALL_OTHERS) for m in manips]
    cells = []
    for train, tests, row in tqdm(jobs, desc="matrix", unit="fit", file=sys.stderr):
        cells += _cells(cache, settings.head, base, train, tests, row, settings.video_agg)
    matrix = pd.DataFrame(cells)
    out = Path(settings.out)
    write_csv(out / "matrix.csv", matrix)
    write_json(out / "matrix.json", {"matrix": to_dict(settings), "protocol": to_dict(base),
                                     "cache_identity": cache.identity()})
    plot_matrix(matrix, out / "matrix_frame_auc.png", "frame_auc")
    plot_matrix(matrix, out / "matrix_video_auc.png", "video_auc")
    print(matrix.pivot(index="train", columns="test", values="frame_auc").round(3).to_string())
    return matrix
