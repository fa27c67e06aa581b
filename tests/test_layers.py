"""Block tokens and perturbed copies stored by extract_features.py, checked against the model itself."""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import pandas as pd
import pytest
import torch

import extract_features
import fit_heads
from clipforensics.data.cache import read_cache
from clipforensics.data.scores import read_scores
from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.extract.perturb import parse_name, parse_perturbations
from clipforensics.extract.reader import ImageFiles, collate_images
from conftest import TINY

ROWS = 160  # spread over the synthetic root: every class, most videos
PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]


@pytest.fixture(scope="module")
def layered(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("layers") / "layers.h5"
    code = extract_features.main(["--data-root", str(synthetic_root), "--out", str(out), *TINY, "--max-images", str(ROWS), "--precision", "fp32", "--layers", "all",
                                  "--perturb", "blur:0,2", "noise:0", "resize:1", "jpeg:30"])
    assert code == 0
    return out


def own_intermediates(cache, root: Path) -> tuple[torch.nn.Module, torch.Tensor, list[torch.Tensor]]:
    """The class tokens open_clip's own forward_intermediates gives for the cache's rows."""
    loaded = load_model(ModelSettings(model="tiny-vit", pretrained="none"), "cpu", "fp32")
    files = ImageFiles(root, cache.manifest["path"].tolist(), loaded.pixels, loaded.image_size, uint8=True)
    images = loaded.normalize(collate_images([files[i] for i in range(len(files))])[0])
    with torch.inference_mode():
        out = loaded.model.visual.forward_intermediates(images, output_extra_tokens=True, intermediates_only=True)
    return loaded.model, images, [t[:, 0] for t in out["image_intermediates_prefix"]]


def test_stored_tokens_are_the_models_own_intermediates_and_feed_the_embedding(layered, synthetic_root):
    cache = read_cache(layered, layers=True)
    assert sorted(cache.layers) == [0, 1] and cache.attrs["layers"] == [0, 1]
    cache.manifest, cache.embeddings = cache.manifest.iloc[:40], cache.embeddings[:40]
    cache.layers = {k: v[:40] for k, v in cache.layers.items()}
    model, _, tokens = own_intermediates(cache, synthetic_root)
    for k, token in enumerate(tokens):
        stored = cache.layers[k].astype(np.float32)
        assert stored.shape == (40, 128) and cache.layers[k].dtype == np.float16
        np.testing.assert_allclose(stored, token.numpy(), rtol=2e-3, atol=2e-3)
    visual = model.visual
    with torch.inference_mode():
        final = visual.ln_post(torch.from_numpy(cache.layers[1].astype(np.float32))) @ visual.proj
    np.testing.assert_allclose(final.numpy(), cache.embeddings.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_identity_level_copies_equal_the_clean_embedding(layered):
    cache = read_cache(layered, perturbed=True)
    assert set(cache.perturbed) == {"blur:0", "blur:2", "noise:0", "resize:1", "jpeg:30"}
    clean = cache.embeddings.astype(np.float32)
    for name in ("blur:0", "noise:0", "resize:1"):
        np.testing.assert_allclose(cache.perturbed[name].astype(np.float32), clean, atol=1e-3, err_msg=name)
    for name in ("blur:2", "jpeg:30"):
        assert np.abs(cache.perturbed[name].astype(np.float32) - clean).max() > 1e-2, name


@pytest.mark.parametrize("args, message", [
    (["--layers", "7"], "blocks 0..1"),
    (["--layers", "first"], "--layers takes"),
    (["--perturb", "jpeg:0"], "out of range"),
    (["--perturb", "sharpen:2"], "unknown perturbation"),
    (["--layers", ""], "names no block"),
    (["--perturb", "jpeg:"], "gives no level"),
    (["--perturb", "blur:inf"], "out of range"),
    (["--perturb", "noise:0.1,,0.2"], "not a number"),
    (["--perturb", "noise:0.1", "--perturb-seed", "-1"], "non-negative"),
])
def test_bad_layer_and_perturbation_specs_are_one_line_errors(synthetic_root, tmp_path, capsys, args, message):
    code = extract_features.main(["--data-root", str(synthetic_root), "--out", str(tmp_path / "x.h5"), *TINY,
                                  "--max-images", "4", *args])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0]


def test_levels_that_print_alike_keep_distinct_names():
    """'%g' prints blur 1 and blur 1.0000001 alike: one name for two copies would lose one of them in the cache."""
    copies = parse_perturbations(["blur:1", "blur:1.0000001", "noise:0.02"])
    assert [p.name for p in copies] == ["blur:1", "blur:1.0000001", "noise:0.02"]
    assert [parse_name(p.name) for p in copies] == list(copies)


def test_rerun_with_another_perturb_seed_is_refused_not_nothing_to_do(layered, synthetic_root, capsys):
    code = extract_features.main(["--data-root", str(synthetic_root), "--out", str(layered), *TINY, "--max-images",
                                  str(ROWS), "--precision", "fp32", "--layers", "all", "--perturb", "blur:0,2",
                                  "noise:0", "resize:1", "jpeg:30", "--perturb-seed", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "--perturb-seed 0, not 3" in err and "nothing to do" not in err


def test_head_on_one_layer_and_a_concatenation(layered, tmp_path):
    out = tmp_path / "run"
    assert fit_heads.main(["--cache", str(layered), "--heads", "logreg", "--layer", "concat:0,1", "--out", str(out),
                           *PROTOCOL]) == 0
    assert json.loads((out / "run.json").read_text())["layer"] == "concat:0,1"
    assert fit_heads.main(["--cache", str(layered), "--heads", "logreg", "--layer", "last", "--out", str(out),
                           *PROTOCOL, "--overwrite"]) == 0
    assert read_scores(out / "logreg" / "scores.csv")["split"].isin(["val", "test"]).all()


def test_layer_sweep_table_picks_by_validation(layered, tmp_path):
    out = tmp_path / "sweep"
    assert fit_heads.main(["--cache", str(layered), "--heads", "logreg,zeroshot-v2", "--layer-sweep",
                           "--out", str(out), *PROTOCOL]) == 0
    table = pd.read_csv(out / "layer_sweep.csv", keep_default_na=False)
    assert table["layer"].astype(str).tolist() == ["0", "1", "final"] and set(table["head"]) == {"logreg"}
    assert {"all video AUC", "NeuralTextures video AUC", "Deepfakes frame AUC"} <= set(table.columns)
    picked = table[table["picked by val"] == "yes"]
    assert len(picked) == 1 and picked["val video AUC"].iloc[0] == table["val video AUC"].max()
    assert (out / "layer_sweep.png").stat().st_size > 0


def test_layer_refusals(layered, tiny_cache, tmp_path, capsys):
    base = ["--heads", "logreg", "--out", str(tmp_path / "r"), *PROTOCOL]
    assert fit_heads.main(["--cache", str(layered), "--layer", "5", *base]) == 2
    assert "stores layers [0, 1]" in capsys.readouterr().err
    assert fit_heads.main(["--cache", str(tiny_cache), "--layer", "0", *base]) == 2
    assert "re-extract with --layers" in capsys.readouterr().err
    assert fit_heads.main(["--cache", str(layered), "--layer", "0", *base, "--heads", "zeroshot-v2"]) == 2
    assert "needs the final" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--layer", "concat:"], "names no layer"),
    (["--layer", "concat:0,0"], "appears twice"),
    (["--layer-sweep", "--heads", "zeroshot-v2"], "prompt heads only"),
    (["--layer-sweep", "--layer", "0"], "drop --layer"),
    (["--layer-sweep", "--test-cache", "other.h5"], "drop --test-cache"),
])
def test_layer_options_a_fit_cannot_honour_are_refused_not_dropped(layered, tmp_path, capsys, args, message):
    heads = [] if "--heads" in args else ["--heads", "logreg"]
    code = fit_heads.main(["--cache", str(layered), *heads, "--out", str(tmp_path / "r"), *PROTOCOL, *args])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "r" / "layer_sweep.json").exists()


def test_sweep_of_all_heads_fits_every_trained_head(layered, tmp_path):
    out = tmp_path / "sweep"
    assert fit_heads.main(["--cache", str(layered), "--heads", "all", "--layer-sweep", "--out", str(out),
                           *PROTOCOL]) == 0
    assert json.loads((out / "layer_sweep.json").read_text())["heads"] == ["logreg", "svm", "ridge", "real-only"]


def test_heads_of_a_layer_and_of_the_final_embedding_never_share_a_run(layered, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--cache", str(layered), "--out", str(out), *PROTOCOL]
    assert fit_heads.main([*base, "--heads", "logreg", "--layer", "0"]) == 0
    assert fit_heads.main([*base, "--heads", "svm"]) == 2
    assert "differs in layer" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["layer"] == "0" and not (out / "svm").exists()


def test_a_sweep_and_a_run_share_a_folder_only_from_one_cache_and_protocol(layered, tiny_cache, tmp_path, capsys):
    out = tmp_path / "study"
    sweep = ["--cache", str(layered), "--heads", "logreg", "--layer-sweep", "--out", str(out)]
    assert fit_heads.main([*sweep, *PROTOCOL]) == 0
    written = (out / "layer_sweep.json").read_text()
    assert fit_heads.main(["--cache", str(layered), "--heads", "logreg", "--out", str(out), *PROTOCOL]) == 0
    assert (out / "layer_sweep.json").read_text() == written  # fitting heads beside it keeps the sweep
    assert fit_heads.main([*sweep, *PROTOCOL, "--real-split", "60/20/20"]) == 2
    assert "differs in splits" in capsys.readouterr().err
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg", "--out", str(out), *PROTOCOL,
                           "--overwrite"]) == 0
    assert not (out / "layer_sweep.json").exists()
