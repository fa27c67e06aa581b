"""evaluate.py robustness with in-domain and unseen test videos apart: each group's video AUC against sklearn on the
head's own scores of the copy, backbone-seen manipulations kept out of "unseen", the two-panel figure, and the
main report's robustness section."""

from __future__ import annotations

import json
from html import unescape
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
import fit_heads
from clipforensics.data.cache import read_cache, write_cache
from clipforensics.data.manifest import COLUMNS, manifest_hash
from clipforensics.data.provenance import ATTR_PROTOCOL, ATTR_TRAIN, ATTR_VAL, TunedTower
from clipforensics.report.robustness import groups_figure, groups_table
from clipforensics.studies.robustness import groups_for

CLASSES = ("Real_youtube", "FaceSwap", "Deepfakes", "Face2Face")
TESTED = ("FaceSwap", "Deepfakes", "Face2Face")
SPLIT = ["--test-fakes", ",".join(TESTED), "--real-split", "50/20/30"]
BOOT = ["--bootstrap", "100"]


def four_class_cache(path: Path, videos: int = 160, frames: int = 3, dim: int = 16,
                     attrs: dict | None = None) -> Path:
    """FaceSwap fakes along one direction, Deepfakes along an orthogonal one (a FaceSwap head cannot see them),
    Face2Face half-way along the first; copy 'blur:0' is the clean matrix, 'blur:3' mostly noise."""
    rng = np.random.default_rng(1)
    a, b = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T * 4
    shift = {"Real_youtube": 0 * a, "FaceSwap": 1.5 * a, "Deepfakes": 1.5 * b, "Face2Face": 0.6 * a}
    records, blocks = [], []
    for v in range(videos):
        cls = CLASSES[v % 4]
        real = cls == CLASSES[0]
        vid = f"{v:03d}" if real else f"{v:03d}_{(v + 1) % videos:03d}"
        blocks.append(shift[cls] + rng.normal(0, 0.5, dim) + rng.normal(0, 1, (frames, dim)))
        records += [(f"{cls}/{vid}/{f:03d}.png", int(not real), cls, f"{cls}/{vid}", vid[:3],
                     "" if real else vid[4:]) for f in range(frames)]
    manifest = pd.DataFrame(records, columns=list(COLUMNS))
    emb = np.concatenate(blocks).astype(np.float16)
    heavy = emb.astype(np.float32) * 0.05 + rng.normal(0, 1, emb.shape)
    extras = {"perturbed/blur:0/image_embeddings": emb, "perturbed/blur:3/image_embeddings": heavy}
    base = {"model": "test-synthetic", "pretrained": "none", "weights_fingerprint": "fp-groups", "init_seed": 0,
            "image_size": 64, "precision": "fp32", "manifest_hash": manifest_hash(manifest),
            "crops": {"detector": "none"}, "data_root": str(path.parent), "layers": []}
    return write_cache(path, embeddings=emb, manifest=manifest, attrs={**base, **(attrs or {})}, prompts={},
                       failed=pd.DataFrame({"path": [], "reason": []}), extras=extras)


def robustness_record(run: Path, out: Path) -> dict:
    assert evaluate.main(["robustness", str(run), "--out", str(out), *BOOT]) == 0
    return json.loads((out / "robustness.json").read_text())


def video_scores_by_hand(head_dir: Path, cache_path: Path, copy: str) -> pd.DataFrame:
    """The saved head on the copy's embeddings of the test rows, averaged per video (mean, the default)."""
    scores = pd.read_csv(head_dir / "scores.csv")
    test = scores[scores.split == "test"]
    cache = read_cache(cache_path, perturbed=True)
    idx = pd.Series(range(len(cache.manifest)), index=cache.manifest.path).loc[test.path].to_numpy()
    emb = cache.embeddings if copy == "clean" else cache.perturbed[copy]
    p = joblib.load(head_dir / "model.joblib").predict_proba(emb[idx].astype(np.float32))[:, 1]
    frames = test.assign(score=p)
    return frames.groupby("video").agg(label=("label", "first"), manipulation=("manipulation", "first"),
                                       score=("score", "mean"))


def auc_of(videos: pd.DataFrame, fakes: set[str]) -> tuple[float, int]:
    """sklearn's AUC of every test real against the fakes of `fakes`, and how many videos that is."""
    part = videos[(videos.label == 0) | videos.manipulation.isin(fakes)]
    return roc_auc_score(part.label, part.score), len(part)


@pytest.fixture(scope="module")
def faceswap_run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("groups")
    cache = four_class_cache(root / "c.h5")
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(root / "run"),
                           "--train-fakes", "FaceSwap", *SPLIT]) == 0
    return {"root": root, "cache": cache, "run": root / "run"}


def test_each_group_is_sklearns_auc_on_its_videos(faceswap_run):
    record = robustness_record(faceswap_run["run"], faceswap_run["root"] / "report")
    rows = {(r["copy"], r["test_group"]): r for r in record["robustness_groups"]}
    expected = {"in-domain": {"FaceSwap"}, "unseen": {"Deepfakes", "Face2Face"},
                **{m: {m} for m in TESTED}}
    assert set(rows) == {(copy, group) for copy in ("clean", "blur:0", "blur:3") for group in expected}
    for copy in ("clean", "blur:3"):
        videos = video_scores_by_hand(faceswap_run["run"] / "logreg", faceswap_run["cache"], copy)
        for group, fakes in expected.items():
            row = rows[(copy, group)]
            auc, n = auc_of(videos, fakes)
            assert row["video_auc"] == pytest.approx(auc, abs=1e-9), (copy, group)
            assert row["n_test_videos"] == n and set(row["fakes"]) == fakes
            lo, hi = row["video_auc_ci"]
            assert lo <= row["video_auc"] <= hi
    assert rows[("clean", "FaceSwap")]["test_group_kind"] == "in-domain"
    assert rows[("clean", "Deepfakes")]["test_group_kind"] == "unseen"
    # the data: FaceSwap detected, Deepfakes not; the heavy copy brings in-domain down to the unseen level
    assert rows[("clean", "in-domain")]["video_auc"] > 0.9 > rows[("clean", "Deepfakes")]["video_auc"] + 0.2
    assert rows[("blur:3", "in-domain")]["video_auc"] < rows[("clean", "in-domain")]["video_auc"] - 0.2
    # the rows over every test video keep their place and columns, now with their group
    pooled = {r["copy"]: r for r in record["robustness"]}
    videos = video_scores_by_hand(faceswap_run["run"] / "logreg", faceswap_run["cache"], "clean")
    assert pooled["clean"]["video_auc"] == pytest.approx(auc_of(videos, set(TESTED))[0], abs=1e-9)
    assert {r["test_group"] for r in record["robustness"]} == {"all"}
    assert {"run", "copy", "kind", "level", "severity", "frame_auc", "video_auc_ci", "n_test_videos"} <= set(
        pooled["clean"])


def test_the_files_hold_the_groups(faceswap_run):
    out = faceswap_run["root"] / "report-files"
    record = robustness_record(faceswap_run["run"], out)
    flat = pd.read_csv(out / "robustness.csv")
    assert len(flat) == len(record["robustness"]) + len(record["robustness_groups"])
    assert list(flat.columns[:5]) == ["run", "copy", "kind", "level", "severity"]
    assert set(flat["test_group"]) == {"all", "in-domain", "unseen", *TESTED}
    assert (flat.loc[flat["copy"] == "clean", "test_group"].iloc[0]) == "all"  # rows over every test video first
    table = pd.read_csv(out / "robustness_groups.csv")
    assert list(table.columns[:6]) == ["run", "trained on", "test copy", "all test video AUC",
                                       "in-domain video AUC", "unseen video AUC"]
    assert "FaceSwap" not in table.columns and {"Deepfakes", "Face2Face", "drop"} <= set(table.columns)
    clean = table[table["test copy"] == "clean"].iloc[0]
    unseen = next(r for r in record["robustness_groups"] if r["copy"] == "clean" and r["test_group"] == "unseen")
    assert clean["unseen video AUC"].startswith(f"{unseen['video_auc']:.3f} [")
    assert r"\toprule" in (out / "robustness_groups.tex").read_text()
    for stem in ("robustness_groups", "robustness"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.svg").stat().st_size > 0
    svg = (out / "robustness_groups.svg").read_text()
    assert "in-domain: blur" in svg and "unseen (pooled): blur" in svg
    html = unescape((out / "report.html").read_text())
    assert "unseen video AUC" in html and "in-domain and unseen test videos apart" in html


def test_backbone_seen_manipulation_is_never_unseen(faceswap_run, tmp_path):
    """A Deepfakes head on the features of a backbone tuned on FaceSwap: FaceSwap is backbone-seen, so unseen pools
    Face2Face alone."""
    splits = pd.read_csv(faceswap_run["run"] / "splits.csv")
    lora = {ATTR_PROTOCOL: {"train_fakes": ["FaceSwap"]}, "lora_splits": "digest", "lora_run": "runs/x-lora",
            ATTR_TRAIN: sorted(splits.loc[splits.split == "train", "video"]),
            ATTR_VAL: sorted(splits.loc[splits.split == "val", "video"])}
    cache = four_class_cache(tmp_path / "lora.h5", attrs=lora)
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(tmp_path / "run"),
                           "--train-fakes", "Deepfakes", *SPLIT]) == 0
    record = robustness_record(tmp_path / "run", tmp_path / "report")
    rows = {(r["copy"], r["test_group"]): r for r in record["robustness_groups"]}
    assert rows[("clean", "FaceSwap")]["test_group_kind"] == "backbone-seen"
    assert rows[("clean", "in-domain")]["fakes"] == ["Deepfakes"]
    assert rows[("clean", "unseen")]["fakes"] == ["Face2Face"]
    videos = video_scores_by_hand(tmp_path / "run" / "logreg", cache, "clean")
    assert rows[("clean", "unseen")]["video_auc"] == pytest.approx(auc_of(videos, {"Face2Face"})[0], abs=1e-9)
    table = groups_table(record["robustness"] + record["robustness_groups"])
    column = table.columns.index("FaceSwap")
    assert all(row.cells[column].endswith(" †") for row in table.rows)


@pytest.mark.parametrize("here, seen", [(True, True), (None, True), (False, False)])
def test_the_tower_rule_decides_backbone_seen(here, seen):
    """TunedTower.saw is the one rule: tuned on this data set (or maybe) -> backbone-seen; on another -> unseen."""
    groups = {g.name: g for g in groups_for(["Deepfakes"], list(TESTED), TunedTower(("FaceSwap",), "r", here))}
    assert groups["FaceSwap"].kind == ("backbone-seen" if seen else "unseen")
    assert ("FaceSwap" in groups["unseen"].fakes) is not seen and groups["in-domain"].fakes == ("Deepfakes",)
    assert groups["all"].fakes == TESTED
    assert [g.name for g in groups_for(["FaceSwap"], ["FaceSwap"], None)] == ["all", "in-domain", "FaceSwap"]


def _row(run: str, copy: str, group: str, auc: float, kind: str = "") -> dict:
    level = None if copy == "clean" else float(copy.split(":")[1])
    return {"run": run, "copy": copy, "kind": copy.split(":")[0], "level": level,
            "severity": level, "test_group": group, "test_group_kind": kind or group, "fakes": ["FaceSwap"],
            "video_auc": auc, "video_auc_ci": [auc - 0.1, auc + 0.05]}


def test_the_figure_puts_in_domain_and_unseen_side_by_side_on_one_axis():
    rows = [_row(run, copy, group, auc) for run in ("a", "b") for copy in ("clean", "blur:1", "jpeg:50")
            for group, auc in (("in-domain", 0.9), ("unseen", 0.55))]
    fig = groups_figure(rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["in-domain: blur", "unseen (pooled): blur", "in-domain: jpeg", "unseen (pooled): jpeg"]
    first = fig.axes[0]
    assert all(first.get_shared_y_axes().joined(first, ax) for ax in fig.axes[1:])
    assert [round(y, 2) for y in fig.axes[1].lines[1].get_ydata()] == [0.55, 0.55]  # chance first, then run a


def test_main_report_shows_the_groups_and_an_older_report_still_folds_in(faceswap_run, tmp_path):
    robust = faceswap_run["root"] / "robust-for-include"
    record = robustness_record(faceswap_run["run"], robust)
    old = tmp_path / "old-robust"
    old.mkdir()
    (old / "robustness.json").write_text(json.dumps({k: v for k, v in record.items() if k != "robustness_groups"}))
    out = tmp_path / "full"
    assert evaluate.main([str(faceswap_run["run"] / "logreg" / "scores.csv"), "--include", str(robust), str(old),
                          "--out", str(out), *BOOT]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["robustness"][str(robust)] == record
    html = unescape((out / "report.html").read_text())
    assert f"video AUC vs perturbation severity, in-domain and unseen test videos apart (95% CI): {robust}" in html
    assert f"AUC vs perturbation severity over every test video, per perturbation kind (95% CI): {old}" in html
    assert "unseen video AUC" in html
    for name in (robust.name, old.name):
        assert (out / f"robustness_{name}.png").is_file() and (out / f"robustness_{name}.svg").is_file()
    assert "in-domain: blur" in (out / f"robustness_{robust.name}.svg").read_text()
