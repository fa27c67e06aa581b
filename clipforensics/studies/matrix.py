"""The generalisation matrix: train on real + one manipulation (or a whole data set), test on every
manipulation and on every other data set (DeepfakeBench's cross-manipulation and cross-dataset tables).

Rows are training sources: each manipulation of the primary cache, "all of <cache>" (every
manipulation), "all others" (for each test manipulation, train on every other one) and every
--train-cache (all its manipulations, under the same protocol options). Columns are the primary
cache's test manipulations and every other data set (--test-cache, --train-cache): each is one test
set, the same in every row (a data set's official test list, or all of it; a training cache's
protocol test split). Each row's head scores a scores table, which goes through the same evaluator as
`evaluate.py`, so every cell gets its frame and video AUC with bootstrap intervals; cells a row's head
was trained on the same data for are marked in-domain (the diagonal). One head per row, seconds each.

Per-data-set AUC hides score shifts between data sets: a head whose real scores on one set sit above its
fake scores on another fails once both arrive together. So every row tested on several data sets also gets
its Cross-AUC (`cross_auc.csv`, and `cross_auc` in matrix.json): the test reals of each data set against the
test fakes of each (the diagonal is the data set's own AUC), and one AUC over all its test sets pooled,
each from the same evaluator with video-level bootstrap intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from clipforensics.core.progress import progress

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.io import claim_output, write_csv, write_json
from clipforensics.core.settings import to_dict
from clipforensics.data.cache import FeatureCache, read_cache
from clipforensics.data.crossdata import (TestSet, check_disjoint, check_same_features, dataset_name,
                                          load_test_sets, scores_with_tests)
from clipforensics.data.protocol import CrossSettings, ProtocolSettings, Splits, make_splits
from clipforensics.data.provenance import backbone_note, check_lora_overlap, tuned_tower
from clipforensics.data.splitfile import TABLE_NAME, union_split_table, write_split_table
from clipforensics.data.scores import write_scores
from clipforensics.evaluate.evaluation import check_measure, evaluate_run, split_datasets
from clipforensics.evaluate.settings import MeasureSettings
from clipforensics.measure.metrics import evaluate_split
from clipforensics.measure.result import RunResult
from clipforensics.measure.specs import summary_values
from clipforensics.heads.features import features, scored_probabilities, scored_split, test_probabilities
from clipforensics.heads.heads import fit_head, resolve_heads
from clipforensics.report.matrix import POOLED, write_matrix_report
from clipforensics.studies.settings import MatrixSettings

ALL_OTHERS = "all others"
ALL_OF = "all of "


@dataclass(frozen=True)
class MatrixRow:
    """One fitted head: its row label, what it trains on and which of its source's manipulations it is tested
    on; `source` names the training data set ('' = the primary cache), `elsewhere` whether the other data
    sets' columns are tested too."""

    label: str
    train: tuple[str, ...]
    tests: tuple[str, ...]
    source: str = ""
    elsewhere: bool = True

    @property
    def name(self) -> str:
        """A unique name (several rows are labelled "all others"), also its scores folder."""
        if self.label == ALL_OTHERS:
            return f"all-but-{self.tests[0]}"
        return self.label.replace(" ", "-")


def matrix_rows(manips: list[str], primary: str = "", sources: dict[str, tuple[str, ...]] | None = None
                ) -> list[MatrixRow]:
    """Each manipulation, all of them, all but each (tested on the held-out one only), each training cache."""
    rows = [MatrixRow(m, (m,), tuple(manips)) for m in manips]
    if len(manips) > 1 and primary:
        rows.append(MatrixRow(ALL_OF + primary, tuple(manips), tuple(manips)))
    if len(manips) > 2:
        rows += [MatrixRow(ALL_OTHERS, tuple(o for o in manips if o != m), (m,), elsewhere=False) for m in manips]
    rows += [MatrixRow(name, fakes, fakes, source=name) for name, fakes in (sources or {}).items()]
    return rows


@dataclass
class Source:
    """A data set that trains rows: its cache, name, manipulations and the protocol options it splits with."""

    name: str
    cache: FeatureCache
    base: ProtocolSettings

    @property
    def manipulations(self) -> tuple[str, ...]:
        manifest = self.cache.manifest
        return tuple(sorted(manifest.loc[manifest["label"] == 1, "manipulation"].unique()))

    def splits(self, train: tuple[str, ...], tests: tuple[str, ...]) -> Splits:
        splits = make_splits(self.cache.manifest, replace(self.base, train_fakes=train, test_fakes=tests))
        check_lora_overlap(self.cache.attrs, splits.rows, str(self.cache.path))
        return splits

    def test_set(self) -> tuple[TestSet, Splits]:
        """This data set as a column: its protocol's test rows with every manipulation tested."""
        splits = self.splits(self.manipulations, self.manipulations)
        rows = splits.rows[splits.rows["split"] == "test"].assign(dataset=self.name)
        return TestSet(self.name, self.cache, rows, official=False), splits


def score_row(source: Source, head: str, row: MatrixRow,
              columns: list[TestSet]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores table of a head fitted on the row's training manipulations of its source (val and test rows,
    and every other column's test rows), and the row's split table; a LoRA cache whose run saw this row's test
    (or val) groups is refused."""
    splits = source.splits(row.train, row.tests)
    rows = splits.rows
    fitted = fit_head(head, source.cache.prompts, features(source.cache, rows, "train"),
                      features(source.cache, rows, "val")).head
    scored = scored_split(rows)
    others = [c for c in columns if c.name != source.name] if row.elsewhere else []
    for other in others:
        check_disjoint(rows, other)
    scores = scores_with_tests(scored, scored_probabilities([fitted], source.cache, scored)[0], source.name, others,
                               lambda test: test_probabilities(fitted, test))
    return scores, splits.table()


def _metric_columns(result: dict[str, Any]) -> dict[str, Any]:
    """Every summary metric of the cell with its interval bounds (frame_auc, frame_auc_lo, frame_auc_hi, ...)."""
    columns: dict[str, Any] = {}
    for key, point, ci in summary_values(result):
        lo, hi = ci or (None, None)
        columns.update({key: point, f"{key}_lo": lo, f"{key}_hi": hi})
    return columns


def _cell(row: MatrixRow, test: str, dataset: str, result: dict[str, Any], in_domain: bool) -> dict[str, Any]:
    video = result["video"]
    return {"train": row.label, "test": test, "dataset": dataset, **_metric_columns(result),
            "real_videos": video["n_real"], "fake_videos": video["n_fake"], "in_domain": in_domain}


def _by_manipulation(result: RunResult) -> dict[str, dict[str, Any]]:
    by_test = result.per_manipulation
    if not by_test:
        fakes = result.scores.loc[result.scores["label"] == 1, "manipulation"].unique()
        by_test = {str(fakes[0]): result.metrics}
    return by_test


def row_cells(row: MatrixRow, result: RunResult, primary: str = "",
              others: dict[str, RunResult] | None = None) -> list[dict[str, Any]]:
    """The row's cells: for the primary cache, all its test reals against each manipulation's test fakes;
    for every other data set, its whole test set (`others`: data set name -> its result)."""
    cells = []
    own = row.source or primary
    if row.source:
        cells.append(_cell(row, row.source, row.source, result.metrics, in_domain=True))
    else:
        by_test = _by_manipulation(result)
        for manip in row.tests:
            if manip not in by_test:
                raise UserError(f"matrix: no {manip} test videos for the row trained on {row.name}")
            cells.append(_cell(row, manip, own, by_test[manip], in_domain=manip in row.train))
    for name, other in (others or {}).items():
        if name == primary:
            by_test = _by_manipulation(other)
            cells += [_cell(row, manip, name, by_test[manip], in_domain=False) for manip in by_test]
        else:
            cells.append(_cell(row, name, name, other.metrics, in_domain=False))
    return cells


def _check_names(primary: str, manips: list[str], names: list[str]) -> None:
    clash = sorted(set(names) & (set(manips) | {primary}))
    if clash:
        raise UserError(f"matrix: data set name {clash[0]!r} (a cache file's stem) is also the primary cache's name "
                        "or one of its manipulations; rename the cache so rows and columns stay apart")


CROSS_KEYS = ["train", "reals", "fakes"]
"""The columns that name a Cross-AUC cell (its metrics follow)."""


def _tagged(results: dict[str, RunResult]) -> dict[str, pd.DataFrame]:
    """Each data set's test rows with its videos named `<data set>/<video>`, so two sets never share a video."""
    return {name: result.scores.assign(video=name + "/" + result.scores["video"].astype(str))
            for name, result in results.items()}


def cross_auc(row: MatrixRow, results: dict[str, RunResult], measure: MeasureSettings) -> list[dict[str, Any]]:
    """Reals of each test data set against fakes of each, then every test set pooled (one row with `reals` and
    `fakes` both POOLED), at the row's validation threshold; none for a row tested on one data set only."""
    if len(results) < 2:
        return []
    tests = _tagged(results)
    kw = dict(threshold=next(iter(results.values())).threshold, video_agg=measure.video_agg,
              n_boot=measure.bootstrap, seed=measure.bootstrap_seed)
    parts = [(reals, fakes, pd.concat([tests[reals][tests[reals]["label"] == 0],
                                       tests[fakes][tests[fakes]["label"] == 1]], ignore_index=True))
             for reals in tests for fakes in tests]
    parts.append((POOLED, POOLED, pd.concat(list(tests.values()), ignore_index=True)))
    cells = []
    for reals, fakes, table in parts:
        if table["label"].nunique() < 2:
            continue
        result = evaluate_split(table, **kw)
        cells.append({"train": row.label, "reals": reals, "fakes": fakes, **_metric_columns(result),
                      "real_videos": result["video"]["n_real"], "fake_videos": result["video"]["n_fake"]})
    return cells


FILES = ("matrix.csv", "matrix.json", "cross_auc.csv", "matrix_frame_auc.png", "matrix_video_auc.png", "scores", "splits",
         TABLE_NAME)


def _sources(settings: MatrixSettings, base: ProtocolSettings, cross: CrossSettings,
             cache: FeatureCache) -> tuple[Source, list[Source], list[TestSet]]:
    """The primary data set, the training caches and the other test sets, checked before anything is written:
    one name each, the same features, a head every training cache supports."""
    primary = Source(dataset_name(settings.cache), cache, base)
    trainers = [Source(dataset_name(p), read_cache(p), replace(base, split_file=None)) for p in settings.train_cache]
    tests = load_test_sets(cache, cross, base.frames_per_video)
    names = [t.name for t in trainers] + [t.name for t in tests]
    if len(set(names)) < len(names):
        raise UserError(f"matrix: a data set is given twice (names: {', '.join(names)}); name caches apart")
    _check_names(primary.name, list(primary.manipulations), names)
    for trainer in trainers:
        check_same_features(cache, trainer.cache)
        resolve_heads(settings.heads, trainer.cache.prompts)
    return primary, trainers, tests


def _columns(primary: Source, trainers: list[Source],
             tests: list[TestSet]) -> tuple[list[TestSet], dict[str, list[pd.DataFrame]]]:
    """Every column besides the primary cache's manipulations (the primary's own test split too when training
    caches join), and the split tables their protocol splits start each data set's splits.csv with."""
    own_columns = [trainer.test_set() for trainer in trainers]
    columns = [column for column, _ in own_columns] + tests
    tables = {trainer.name: [splits.table()] for trainer, (_, splits) in zip(trainers, own_columns)}
    tables[primary.name] = []
    if trainers:
        primary_column, primary_splits = primary.test_set()
        columns = [primary_column] + columns
        tables[primary.name].append(primary_splits.table())
    return columns, tables


def _measure_row(row: MatrixRow, source: Source, settings: MatrixSettings, columns: list[TestSet], out: Path,
                 meta: dict[str, Any], primary: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], pd.DataFrame]:
    """The row's head fitted and its scores table written, then every cell from the shared evaluator; returns the
    cells (without the backbone note), its Cross-AUC cells and the row's split table."""
    scores, table = score_row(source, settings.head, row, columns)
    write_scores(out / "scores" / row.name, scores, {**meta, "name": row.name, "source": source.name,
                                                       "train_fakes": list(row.train), "test_fakes": list(row.tests)})
    results = {dataset or source.name: evaluate_run(name, part, settings)
               for name, dataset, part in split_datasets(row.name, scores)}
    cross = cross_auc(row, results, settings)
    own = results.pop(source.name)
    return row_cells(row, own, primary, results), cross, table


def cross_manipulation(settings: MatrixSettings, base: ProtocolSettings,
                       cross: CrossSettings | None = None) -> pd.DataFrame:
    """Every manipulation in the cache as training and as test set; `base` gives the split options only."""
    if base.train_fakes is not None or base.test_fakes is not None:
        raise UserError("evaluate.py matrix trains and tests on every manipulation in the cache; "
                        "--train-fakes / --test-fakes do not apply to it")
    check_measure(settings)
    cross = cross or CrossSettings()
    out_dir = claim_output(settings.out, stage="matrix",
                           inputs=[("--cache", settings.cache), *(("--train-cache", p) for p in settings.train_cache),
                                   *(("--test-cache", p) for p in cross.test_cache)])
    cache = read_cache(settings.cache)
    resolve_heads(settings.heads, cache.prompts)
    primary, trainers, tests = _sources(settings, base, cross, cache)
    columns, tables = _columns(primary, trainers, tests)
    sources = {primary.name: primary, **{t.name: t for t in trainers}}
    out_dir.clear()
    out_dir.own(*FILES)
    out = out_dir.path
    meta = {"scorer": "head", "head": settings.head, "cache": str(Path(settings.cache).resolve()),
            "cache_identity": cache.identity(), "data_root": cache.attrs.get("data_root"),
            "test_sets": [column.record() for column in columns if column.name != primary.name],
            "package_version": __version__}
    tower = tuned_tower(settings.cache, cache.attrs)
    cells, cross_cells = [], []
    rows = matrix_rows(list(primary.manipulations), primary.name, {t.name: t.manipulations for t in trainers})
    for row in progress(rows, desc="matrix", unit="fit"):
        source = sources[row.source or primary.name]
        measured, crossed, table = _measure_row(row, source, settings, columns, out, meta, primary.name)
        cross_cells += crossed
        tables[source.name].append(table)
        note = backbone_note(tower, row.train, row.source)
        cells += [{**cell, "backbone": note} for cell in measured]
    matrix, crossing = pd.DataFrame(cells), (pd.DataFrame(cross_cells) if cross_cells
                                                     else pd.DataFrame(columns=CROSS_KEYS))
    write_csv(out / "matrix.csv", matrix)
    write_csv(out / "cross_auc.csv", crossing)
    write_split_table(out, union_split_table(tables[primary.name]))
    for trainer in trainers:
        write_split_table(out / "splits" / trainer.name, union_split_table(tables[trainer.name]))
    write_json(out / "matrix.json", {"matrix": to_dict(settings), "protocol": to_dict(base), "other": to_dict(cross),
                                     "cache_identity": cache.identity(), "test_sets": meta["test_sets"],
                                     "cross_auc": cross_cells})
    print(write_matrix_report(matrix, out, crossing))
    return matrix
