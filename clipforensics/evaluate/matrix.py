"""Cross-manipulation matrix: train on real + one manipulation, test on every manipulation (DeepfakeBench's table).

Rows are training manipulations plus "all others" (for each test manipulation, train on every
other one); columns are test manipulations. Each row's head scores a scores table, which goes
through the same evaluator as `evaluate.py`, so every cell gets its frame and video AUC with
bootstrap intervals. One cache, one head, seconds per row.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from clipforensics import __version__
from clipforensics.core.io import write_csv, write_json
from clipforensics.core.errors import UserError
from clipforensics.core.settings import option, to_dict
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.data.provenance import LoraProvenance, check_lora_overlap
from clipforensics.data.splitfile import union_split_table, write_split_table
from clipforensics.data.scores import make_scores, write_scores
from clipforensics.evaluate.evaluation import MeasureSettings, evaluate_run
from clipforensics.evaluate.result import RunResult
from clipforensics.heads.fit import features, scored_rows
from clipforensics.heads.heads import fit_head, resolve_heads
from clipforensics.report.figures import plot_matrix

ALL_OTHERS = "all others"
LEVELS = ("frame", "video")


@dataclass
class MatrixSettings(MeasureSettings):
    cache: str = option(None, "feature cache written by extract_features.py", required=True, metavar="FILE")
    head: str = option("logreg", "head fitted for every cell")
    out: str = option(None, "output folder", required=True, metavar="DIR")


@dataclass(frozen=True)
class MatrixRow:
    """One fitted head: its row label in the matrix, what it trains on, what it is tested on."""

    label: str
    train: tuple[str, ...]
    tests: tuple[str, ...]

    @property
    def name(self) -> str:
        """A unique name (several rows are labelled "all others"), also its scores folder."""
        return self.label if self.label != ALL_OTHERS else f"all-but-{self.tests[0]}"


def matrix_rows(manips: list[str]) -> list[MatrixRow]:
    rows = [MatrixRow(m, (m,), tuple(manips)) for m in manips]
    if len(manips) > 2:
        rows += [MatrixRow(ALL_OTHERS, tuple(o for o in manips if o != m), (m,)) for m in manips]
    return rows


def score_row(cache: FeatureCache, head: str, base: ProtocolSettings,
              row: MatrixRow) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores table of a head fitted on the row's training manipulations (val and test rows), and the
    row's split table; a LoRA cache whose run saw this row's test (or val) groups is refused."""
    protocol = replace(base, train_fakes=row.train, test_fakes=row.tests)
    splits = make_splits(cache.manifest, protocol)
    check_lora_overlap(cache.attrs, splits.rows, str(cache.path))
    rows = splits.rows
    fitted = fit_head(head, cache.prompts, features(cache, rows, "train"), features(cache, rows, "val")).head
    scored, X = scored_rows(cache, rows)
    return make_scores(scored, fitted.predict_proba(X)), splits.table()


def backbone_note(provenance: LoraProvenance | None, row: MatrixRow) -> str:
    """'backbone saw X' for a row trained on other manipulations than the LoRA run behind the cache: its
    columns are not unseen manipulations for the features, whatever the head was fitted on."""
    if provenance is None or set(row.train) == set(provenance.manipulations):
        return ""
    return f"backbone saw {', '.join(provenance.manipulations)}"


def matrix_text(matrix: pd.DataFrame, value: str = "frame_auc") -> str:
    """The printed table: train rows x test columns, cells whose backbone saw another manipulation marked."""
    notes = matrix.get("backbone", pd.Series("", index=matrix.index)).fillna("")
    marked = matrix.assign(cell=[f"{v:.3f}" + (" *" if note else "") for v, note in zip(matrix[value], notes)])
    table = marked.pivot(index="train", columns="test", values="cell").fillna("").to_string()
    footnotes = [f"* {note}: the LoRA run behind this cache trained its backbone on it, so these cells do not "
                 "measure an unseen manipulation" for note in sorted(set(notes) - {""})]
    return "\n".join([table, *footnotes])


def _auc_columns(result: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for level in LEVELS:
        ci = result[level]["auc_ci"] or (None, None)
        columns.update({f"{level}_auc": result[level]["auc"], f"{level}_auc_lo": ci[0], f"{level}_auc_hi": ci[1]})
    return columns


def row_cells(row: MatrixRow, result: RunResult) -> list[dict[str, Any]]:
    """One cell per test manipulation: all test reals against that manipulation's test fakes."""
    by_test = result.per_manipulation
    if not by_test:
        fakes = result.scores.loc[result.scores["label"] == 1, "manipulation"].unique()
        by_test = {str(fakes[0]): result.metrics}
    cells = []
    for manip in row.tests:
        if manip not in by_test:
            raise UserError(f"matrix: no {manip} test videos for the row trained on {row.name}")
        video = by_test[manip]["video"]
        cells.append({"train": row.label, "test": manip, **_auc_columns(by_test[manip]),
                      "real_videos": video["n_real"], "fake_videos": video["n_fake"]})
    return cells


def cross_manipulation(settings: MatrixSettings, base: ProtocolSettings) -> pd.DataFrame:
    cache = read_cache(settings.cache)
    resolve_heads((settings.head,), cache.prompts)
    manips = sorted(cache.manifest.loc[cache.manifest["label"] == 1, "manipulation"].unique())
    out = Path(settings.out)
    meta = {"scorer": "head", "head": settings.head, "cache": str(Path(settings.cache).resolve()),
            "cache_identity": cache.identity(), "data_root": cache.attrs.get("data_root"),
            "package_version": __version__}
    provenance = LoraProvenance.of(cache.attrs)
    cells, tables = [], []
    for row in tqdm(matrix_rows(manips), desc="matrix", unit="fit", file=sys.stderr):
        scores, table = score_row(cache, settings.head, base, row)
        tables.append(table)
        write_scores(out / "scores" / row.name, scores, {**meta, "name": row.name, "train_fakes": list(row.train),
                                                           "test_fakes": list(row.tests)})
        note = backbone_note(provenance, row)
        cells += [{**cell, "backbone": note} for cell in row_cells(row, evaluate_run(row.name, scores, settings))]
    matrix = pd.DataFrame(cells)
    write_csv(out / "matrix.csv", matrix)
    write_split_table(out, union_split_table(tables))
    write_json(out / "matrix.json", {"matrix": to_dict(settings), "protocol": to_dict(base),
                                     "cache_identity": cache.identity()})
    plot_matrix(matrix, out / "matrix_frame_auc.png", "frame_auc")
    plot_matrix(matrix, out / "matrix_video_auc.png", "video_auc")
    print(matrix_text(matrix))
    return matrix
