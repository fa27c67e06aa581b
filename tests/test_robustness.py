"""evaluate.py robustness: fitted heads scored without refitting on perturbed copies of their cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

import evaluate
import extract_features
import finetune_lora
import fit_heads
from clipforensics.core.errors import UserError
from clipforensics.data.cache import read_cache, write_cache
from clipforensics.data.manifest import COLUMNS, manifest_hash
from clipforensics.data.scores import read_scores
from clipforensics.lora.checkpoint import load_head_tensors, save_head_tensors
from clipforensics.lora.model import LORA_HEADS, SAVED_HEADS, LinearHead, PromptHead, fake_probability
from clipforensics.report.robustness import panel_points
from clipforensics.synthetic.write import generate
from conftest import TINY

CLASSES = ("Real_youtube", "FaceSwap", "Deepfakes")
PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "FaceSwap,Deepfakes", "--real-split", "50/20/30"]


def synthetic_cache(path: Path, copies: bool, videos: int = 90, frames: int = 4, dim: int = 16, layers: int = 0) -> Path:
    """Embeddings with a strong fake direction; copy 'blur:0' is the clean matrix, 'blur:3' wipes most of
    the signal out under noise (a heavy blur on a strong artifact)."""
    rng = np.random.default_rng(0)
    fake_dir = rng.normal(0, 1, dim)
    records, blocks = [], []
    for v in range(videos):
        cls = CLASSES[v % 3]
        real = cls == CLASSES[0]
        vid = f"{v:03d}" if real else f"{v:03d}_{(v + 1) % videos:03d}"
        blocks.append((0 if real else 1.5) * fake_dir + rng.normal(0, 0.5, dim) + rng.normal(0, 1, (frames, dim)))
        records += [(f"{cls}/{vid}/{f:03d}.png", int(not real), cls, f"{cls}/{vid}", vid[:3],
                     "" if real else vid[4:]) for f in range(frames)]
    manifest = pd.DataFrame(records, columns=list(COLUMNS))
    emb = np.concatenate(blocks).astype(np.float16)
    extras = {f"layers/{k}": np.concatenate([emb, emb * (k + 1)], axis=1) for k in range(layers)}
    if copies:
        heavy = emb.astype(np.float32) * 0.05 + rng.normal(0, 1, emb.shape)
        extras.update({"perturbed/blur:0/image_embeddings": emb, "perturbed/blur:3/image_embeddings": heavy})
    attrs = {"model": "test-synthetic", "pretrained": "none", "weights_fingerprint": "fp-test-123", "init_seed": 0,
             "image_size": 64, "precision": "fp32", "manifest_hash": manifest_hash(manifest),
             "crops": {"detector": "none"}, "data_root": str(path.parent), "layers": list(range(layers))}
    return write_cache(path, embeddings=emb, manifest=manifest, attrs=attrs, prompts={},
                       failed=pd.DataFrame({"path": [], "reason": []}), extras=extras)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("robust")
    cache = synthetic_cache(root / "c.h5", copies=True, layers=2)
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(root / "run"), *PROTOCOL]) == 0
    return root


def test_robustness_curve_level0_equals_clean_and_matches_sklearn(fitted):
    out = fitted / "report"
    assert evaluate.main(["robustness", str(fitted / "run"), "--out", str(out), "--bootstrap", "100"]) == 0
    rows = {r["copy"]: r for r in json.loads((out / "robustness.json").read_text())["robustness"]}
    assert set(rows) == {"clean", "blur:0", "blur:3"}
    clean = read_scores(fitted / "run" / "logreg" / "scores.csv")
    test = clean[clean.split == "test"]
    assert rows["clean"]["frame_auc"] == pytest.approx(roc_auc_score(test.label, test.score), abs=1e-9)
    assert rows["blur:0"]["frame_auc"] == rows["clean"]["frame_auc"]
    assert rows["blur:0"]["video_auc"] == rows["clean"]["video_auc"]
    # the heavy copy, scored independently: the head as saved, the copy's rows, sklearn's AUC
    head = joblib.load(fitted / "run" / "logreg" / "model.joblib")
    cache = read_cache(fitted / "c.h5", perturbed=True)
    idx = pd.Series(range(len(cache.manifest)), index=cache.manifest.path).loc[test.path].to_numpy()
    p = head.predict_proba(cache.perturbed["blur:3"][idx].astype(np.float32))[:, 1]  # a Pipeline: column 1 is fake
    assert rows["blur:3"]["frame_auc"] == pytest.approx(roc_auc_score(test.label, p), abs=1e-9)
    assert rows["blur:3"]["video_auc"] < rows["clean"]["video_auc"] - 0.1
    assert rows["blur:3"]["video_auc_ci"][0] <= rows["blur:3"]["video_auc"] <= rows["blur:3"]["video_auc_ci"][1]
    assert (out / "robustness.png").stat().st_size > 0 and (out / "robustness.csv").is_file()
    html = (out / "report.html").read_text()
    assert html.index("fp-test-123") < html.index("test copy")  # provenance block first, then the table


def test_cache_without_copies_is_a_one_line_error(tmp_path, capsys):
    cache = synthetic_cache(tmp_path / "plain.h5", copies=False)
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(tmp_path / "run"), *PROTOCOL]) == 0
    capsys.readouterr()
    assert evaluate.main(["robustness", str(tmp_path / "run"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--perturb" in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def lora_and_heads(tmp_path_factory) -> dict[str, Path]:
    """A LoRA run and a logreg run on one base cache with copies noise:0 (the identity) and blur:3, in fp32 so
    the LoRA cache's embeddings are the ones the run scored its own test frames with."""
    tmp = tmp_path_factory.mktemp("lora-robust")
    root = generate(tmp / "ff", videos=30, frames=2, size=64, strength=3, manipulations=("FaceSwap", "Deepfakes"),
                    seed=0)
    base = tmp / "base.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(base), *TINY, "--precision", "fp32",
                                  "--prompt-sets", "v2", "--perturb", "noise:0", "blur:3"]) == 0
    lora_run = tmp / "base-lora"
    here = Path.cwd()
    os.chdir(tmp)  # relative paths, as typed at a prompt: readers later run from other folders
    try:
        assert finetune_lora.main(["--base-cache", base.name, "--out", lora_run.name, "--epochs", "1", "--rank", "4",
                                   "--alpha", "8", "--lr", "3e-3", "--batch-size", "16", "--workers", "0",
                                   *PROTOCOL]) == 0
    finally:
        os.chdir(here)
    assert fit_heads.main(["--cache", str(base), "--heads", "logreg", "--out", str(tmp / "heads"), *PROTOCOL]) == 0
    return {"lora": lora_run, "heads": tmp / "heads", "tmp": tmp}


def lora_probabilities(run: Path, embeddings: np.ndarray) -> np.ndarray:
    """The prompt head written out by hand from its saved tensors: softmax(exp(t) * cos(e, class means))."""
    tensors = load_file(str(run / "head.safetensors"))
    scale = np.exp(min(float(tensors["logit_scale"]), np.log(100.0)))
    e = embeddings.astype(np.float64)
    logits = scale * (e / np.linalg.norm(e, axis=1, keepdims=True)) @ tensors["classes"].double().numpy().T
    logits -= logits.max(axis=1, keepdims=True)
    return np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)


def test_lora_run_is_scored_through_its_cache_copies_beside_heads(lora_and_heads):
    run, out = lora_and_heads["lora"], lora_and_heads["tmp"] / "report"
    assert evaluate.main(["robustness", str(lora_and_heads["heads"]), str(run), "--out", str(out),
                          "--bootstrap", "100"]) == 0
    rows = {(r["run"], r["copy"]): r for r in json.loads((out / "robustness.json").read_text())["robustness"]}
    assert set(rows) == {(name, copy) for name in ("heads/logreg", run.name) for copy in ("clean", "noise:0", "blur:3")}
    summary = json.loads((run / "lora.json").read_text())
    cache = read_cache(summary["lora_cache"], perturbed=True)
    assert cache.attrs["adapter_sha"] == summary["adapter_sha"] and set(cache.perturbed) == {"noise:0", "blur:3"}
    own = read_scores(run / "scores.csv")
    test = own[own.split == "test"]
    idx = pd.Series(range(len(cache.manifest)), index=cache.manifest.path).loc[test.path].to_numpy()
    clean = lora_probabilities(run, cache.embeddings[idx])
    assert np.abs(clean - test.score.to_numpy()).max() < 5e-3  # the run's own test scores, from its cache
    assert rows[(run.name, "clean")]["frame_auc"] == pytest.approx(roc_auc_score(test.label, clean), abs=1e-6)
    blurred = lora_probabilities(run, cache.perturbed["blur:3"][idx])
    assert rows[(run.name, "blur:3")]["frame_auc"] == pytest.approx(roc_auc_score(test.label, blurred), abs=1e-6)
    # its test groups: the LoRA run's own tuning is in-domain (FaceSwap), never backbone-seen; Deepfakes is unseen
    groups = {(r["copy"], r["test_group"]): r for r in json.loads((out / "robustness.json").read_text())
              ["robustness_groups"] if r["run"] == run.name}
    assert groups[("blur:3", "in-domain")]["fakes"] == ["FaceSwap"] and groups[("blur:3", "unseen")]["fakes"] == [
        "Deepfakes"]
    videos = test.assign(score=blurred).groupby("video").agg(label=("label", "first"), score=("score", "mean"),
                                                              manipulation=("manipulation", "first"))
    unseen = videos[videos.manipulation != "FaceSwap"]
    assert groups[("blur:3", "unseen")]["video_auc"] == pytest.approx(roc_auc_score(unseen.label, unseen.score),
                                                                      abs=1e-6)
    assert rows[(run.name, "noise:0")]["frame_auc"] == rows[(run.name, "clean")]["frame_auc"]
    assert rows[(run.name, "noise:0")]["video_auc"] == rows[(run.name, "clean")]["video_auc"]
    assert len({rows[(name, "clean")]["n_test_videos"] for name in ("heads/logreg", run.name)}) == 1
    caches = {c["path"]: c for c in json.loads((out / "robustness.json").read_text())["provenance"]["caches"]}
    lora_cache = caches[str(Path(summary["lora_cache"]))]
    assert lora_cache["perturbations"] == ["noise:0", "blur:3"] and lora_cache["perturb_seed"] == 0
    assert lora_cache["adapter_sha"] == summary["adapter_sha"] and "layers" not in lora_cache


@pytest.mark.parametrize("damage", ["no copies", "other adapter", "no cache"])
def test_lora_run_without_its_copies_is_a_one_line_error(lora_and_heads, tmp_path, capsys, damage):
    run = tmp_path / "lora"
    shutil.copytree(lora_and_heads["lora"], run)
    summary = json.loads((run / "lora.json").read_text())
    if damage == "no copies":
        cache = read_cache(summary["lora_cache"])
        summary["lora_cache"] = str(write_cache(tmp_path / "plain.h5", embeddings=cache.embeddings,
                                                manifest=cache.manifest, attrs=cache.attrs, prompts=cache.prompts,
                                                failed=cache.failed))
    elif damage == "other adapter":
        summary["adapter_sha"] = "0" * 64
    else:
        summary["lora_cache"] = None
    (run / "lora.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert evaluate.main(["robustness", str(run), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert {"no copies": "--perturb", "other adapter": "adapter", "no cache": "--extract"}[damage] in err


def test_report_opens_with_provenance_naming_the_caches_model_and_fingerprint(fitted):
    out = fitted / "plain-report"
    assert evaluate.main([str(fitted / "run" / "logreg" / "scores.csv"), "--out", str(out), "--bootstrap", "100"]) == 0
    prov = json.loads((out / "metrics.json").read_text())["provenance"]
    (cache,) = prov["caches"]
    assert cache["model"] == "test-synthetic" and cache["weights_fingerprint"] == "fp-test-123"
    assert cache["crops"] == {"detector": "none"} and prov["protocol"]["train_fakes"] == ["FaceSwap"]
    assert prov["splits"]["test"] == {"videos": 36, "frames": 144} and prov["code_version"]
    html = (out / "report.html").read_text()
    assert html.index("fp-test-123") < html.index("Reading the table") < html.index("frame AUC")


def test_sweep_and_robustness_fold_into_the_report_as_written(fitted, capsys):
    sweep, robust, out = fitted / "sweep", fitted / "robust-for-include", fitted / "full"
    assert fit_heads.main(["--cache", str(fitted / "c.h5"), "--heads", "logreg", "--layer-sweep", "--out", str(sweep),
                           *PROTOCOL]) == 0
    assert evaluate.main(["robustness", str(fitted / "run"), "--out", str(robust), "--bootstrap", "100"]) == 0
    assert evaluate.main([str(fitted / "run" / "logreg" / "scores.csv"), "--include", str(sweep), str(robust),
                          "--out", str(out), "--bootstrap", "100"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    written = json.loads((sweep / "layer_sweep.json").read_text())
    assert metrics["layer_sweep"][str(sweep)]["rows"] == written["rows"]
    assert [r["layer"] for r in written["rows"]] == ["0", "1", "final"]
    assert metrics["robustness"][str(robust)] == json.loads((robust / "robustness.json").read_text())
    html = (out / "report.html").read_text()
    assert f"video AUC per stored layer (val picks, test beside it): {sweep}" in html
    assert f"From {robust}." in html and "blur:3" in html
    assert (out / "layer_sweep_sweep.png").stat().st_size > 0
    assert (out / "robustness_robust-for-include.png").stat().st_size > 0
    capsys.readouterr()
    assert evaluate.main([str(fitted / "run" / "logreg" / "scores.csv"), "--include", str(fitted / "run"),
                          "--out", str(fitted / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --include") and "layer_sweep.json" in err and len(err.splitlines()) == 1
    assert not (fitted / "bad").exists()


@pytest.mark.parametrize("kind", ["prompt", "linear"])
def test_every_lora_head_rebuilds_from_its_saved_tensors_alone(tmp_path, kind):
    torch.manual_seed(0)
    head = (PromptHead(torch.randn(2, 16), 4.2) if kind == "prompt" else LinearHead(16))
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p))
    path = save_head_tensors(head, tmp_path / "head.safetensors", {"head": kind})
    rebuilt = load_head_tensors(path)
    assert type(rebuilt) is type(head) and set(LORA_HEADS.names()) == set(SAVED_HEADS.names())
    emb = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    expected = torch.softmax(head(torch.from_numpy(emb)), dim=1)[:, 1].detach().numpy()
    assert np.allclose(fake_probability(rebuilt, emb), expected, atol=1e-7)
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="not a readable LoRA head"):
        load_head_tensors(tmp_path / "bad.safetensors")


def test_a_run_given_twice_is_refused(fitted, capsys):
    capsys.readouterr()
    run = fitted / "run"
    assert evaluate.main(["robustness", str(run), str(run / "logreg"), "--out", str(fitted / "twice")]) == 2
    err = capsys.readouterr().err.strip()
    assert "given twice" in err and len(err.splitlines()) == 1 and not (fitted / "twice").exists()


@pytest.mark.parametrize("damage", ["head.json not JSON", "head.json a list", "model.joblib garbage",
                                    "model.joblib not a head", "lora.json not JSON"])
def test_damaged_run_records_are_one_line_errors(fitted, tmp_path, capsys, damage):
    run = tmp_path / "run"
    if damage.startswith("lora.json"):
        run.mkdir()
        for name in ("lora.json", "head.safetensors", "scores.csv"):
            (run / name).write_text("{not json")
    else:
        shutil.copytree(fitted / "run", run)
        head = run / "logreg"
        if damage == "head.json not JSON":
            (head / "head.json").write_text("{not json")
        elif damage == "head.json a list":
            (head / "head.json").write_text("[]")
        elif damage == "model.joblib garbage":
            (head / "model.joblib").write_bytes(b"garbage")
        else:
            joblib.dump({"C": 1.0}, head / "model.joblib")
    capsys.readouterr()
    assert evaluate.main(["robustness", str(run), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and damage.split()[0] in err


def test_two_runs_of_one_name_are_refused_not_merged(fitted, tmp_path, capsys):
    """Rows, curves and each run's source are keyed by its name: two runs named alike would hide one."""
    other = tmp_path / "elsewhere" / "run"
    shutil.copytree(fitted / "run", other)
    capsys.readouterr()
    assert evaluate.main(["robustness", str(fitted / "run"), str(other), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "both named run/logreg" in err and len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_lora_run_records_its_cache_by_absolute_path(lora_and_heads):
    """robustness (and fit_heads on the LoRA cache) may run from another folder than training did."""
    summary = json.loads((lora_and_heads["lora"] / "lora.json").read_text())
    assert Path(summary["lora_cache"]).is_absolute() and Path(summary["lora_cache"]).is_file()


def test_each_level_keeps_its_tick_when_runs_hold_other_copies():
    """A run whose cache holds jpeg:50 only is drawn at the '50' tick, not at the first level of another run."""
    def row(run: str, kind: str, level: float | None) -> dict:
        severity = None if level is None else -level
        return {"run": run, "kind": kind, "level": level, "severity": severity, "copy": kind}
    rows = [row("a", "clean", None), row("a", "jpeg", 90.0), row("a", "jpeg", 50.0), row("a", "blur", 2.0),
            row("b", "clean", None), row("b", "jpeg", 50.0)]
    ticks, points = panel_points(rows, "jpeg")
    assert ticks == ["clean", "90", "50"]
    assert [at for at, _ in points["a"]] == [0, 1, 2] and [at for at, _ in points["b"]] == [0, 2]
    assert [r["level"] for _, r in points["b"]] == [None, 50.0]
    assert panel_points(rows, "blur")[0] == ["clean", "2"]


@pytest.mark.parametrize("kind, rows", [
    ("layer_sweep", [1, 2]),
    ("layer_sweep", [{"layer": "0", "head": "logreg"}]),
    ("robustness", [{"run": "x"}]),
])
def test_included_rows_of_another_shape_are_refused_before_writing(fitted, tmp_path, capsys, kind, rows):
    folder = tmp_path / "analysis"
    folder.mkdir()
    key = "rows" if kind == "layer_sweep" else "robustness"
    (folder / f"{kind}.json").write_text(json.dumps({key: rows}))
    capsys.readouterr()
    assert evaluate.main([str(fitted / "run" / "logreg" / "scores.csv"), "--include", str(folder),
                          "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --include") and "another shape" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
