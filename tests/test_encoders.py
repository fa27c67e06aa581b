"""Encoders beyond open_clip: a tiny timm ViT (random weights) end to end, its embeddings and block tokens checked
against timm's own forward and preprocessing, its weights from a file, its refusals one line each."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import timm
import timm.data
import torch
from PIL import Image

import detect as detect_cli
import evaluate
import extract_features
import fit_heads
from clipforensics.core.errors import UserError
from clipforensics.data.cache import read_cache
from clipforensics.extract.encoders import ENCODERS, encoder_of, load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.heads.heads import resolve_heads

TIMM = ["--model", "timm:tiny-vit", "--pretrained", "none", "--workers", "0", "--batch-size", "16"]
PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]
ROWS = 120


@pytest.fixture(scope="module")
def timm_cache(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("timm") / "timm.h5"
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(out), *TIMM, "--max-images", str(ROWS),
                                  "--precision", "fp32", "--layers", "all", "--perturb", "jpeg:50"]) == 0
    return out


def timm_own(cache, root: Path, rows: int = 24) -> tuple[torch.nn.Module, torch.Tensor, list[torch.Tensor]]:
    """timm's own eval transform and forward (pooled pre-logits features, and each block's class token)."""
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64, patch_size=8,
                              depth=2, embed_dim=64, num_heads=2)
    model.load_state_dict(load_model(ModelSettings(model="timm:tiny-vit", pretrained="none")).model.visual.state_dict())
    config = timm.data.resolve_data_config(model=model)
    config["input_size"] = (3, 64, 64)
    transform = timm.data.create_transform(**config)
    images = torch.stack([transform(Image.open(root / p).convert("RGB")) for p in cache.manifest["path"][:rows]])
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(images), pre_logits=True)
        out = model.forward_intermediates(images, intermediates_only=True, return_prefix_tokens=True, norm=False)
        tokens = [prefix[:, 0] for _, prefix in out]  # each block's class token, before the final norm
    return model, pooled, tokens


def test_a_timm_cache_holds_timms_own_pooled_features_and_block_tokens(timm_cache, synthetic_root):
    cache = read_cache(timm_cache, layers=True)
    attrs = cache.attrs
    assert attrs["model"] == "timm:tiny-vit" and attrs["weights_fingerprint"] == "init_seed=0"
    assert attrs["image_size"] == 64 and attrs["mean"] == [0.5] * 3 and "crop_pct 0.9" in attrs["resize_mode"]
    assert cache.prompts == {} and cache.embeddings.shape == (ROWS, 64) and sorted(cache.layers) == [0, 1]
    model, pooled, tokens = timm_own(cache, synthetic_root)
    np.testing.assert_allclose(cache.embeddings[:24].astype(np.float32), pooled.numpy(), rtol=1e-2, atol=1e-2)
    for k, token in enumerate(tokens):
        np.testing.assert_allclose(cache.layers[k][:24].astype(np.float32), token.numpy(), rtol=2e-3, atol=2e-3)
    with torch.inference_mode():  # class-token pooling: the last block's token through the final norm
        final = model.norm(torch.from_numpy(cache.layers[1][:24].astype(np.float32)))
    np.testing.assert_allclose(final.numpy(), pooled.numpy(), rtol=1e-2, atol=1e-2)


def test_heads_evaluate_and_detect_work_without_a_text_tower(timm_cache, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert fit_heads.main(["--cache", str(timm_cache), "--heads", "all", "--out", str(runs), *PROTOCOL]) == 0
    assert "'all' leaves out prompt-features" in capsys.readouterr().err
    assert (runs / "logreg" / "scores.csv").exists() and not list(runs.glob("zeroshot-*"))
    assert evaluate.main([str(runs / "logreg" / "scores.csv"), "--out", str(tmp_path / "report"),
                          "--bootstrap", "0"]) == 0
    assert "logreg" in json.loads((tmp_path / "report" / "metrics.json").read_text())["runs"]
    scores = pd.read_csv(runs / "logreg" / "scores.csv", keep_default_na=False)
    row = scores[scores.split == "test"].iloc[0]
    root = Path(read_cache(timm_cache).attrs["data_root"])
    assert detect_cli.main(["--run", str(runs / "logreg"), str(root / row.path), "--out", str(tmp_path / "d"),
                            "--workers", "0"]) == 0
    found = pd.read_csv(tmp_path / "d" / "detections.csv", keep_default_na=False)
    assert float(found.score.iloc[0]) == pytest.approx(float(row.score), abs=1e-4)


def test_prompt_heads_are_refused_by_name_without_prompt_embeddings():
    with pytest.raises(UserError, match="'zeroshot-v2' needs prompt embeddings"):
        resolve_heads(("zeroshot-v2",), {})
    with pytest.raises(UserError, match="'prompt-features' needs prompt embeddings"):
        resolve_heads(("logreg", "prompt-features"), {})
    with pytest.raises(UserError, match="unknown head 'nope'"):
        resolve_heads(("nope",), {})


def test_weights_from_a_file_plain_or_as_a_merged_tower(tmp_path):
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    loaded = load_model(ModelSettings(model="timm:tiny-vit", pretrained="none", init_seed=3))
    plain, wrapped = tmp_path / "plain.safetensors", tmp_path / "merged.safetensors"
    safetensors.torch.save_file(loaded.model.visual.state_dict(), str(plain))
    safetensors.torch.save_file(loaded.model.state_dict(), str(wrapped))  # keys visual.*: a fine-tuning run's merge
    for path in (plain, wrapped):
        again = load_model(ModelSettings(model="timm:tiny-vit", pretrained=str(path)))
        assert again.identity["weights_kind"] == "file" and not again.identity["random_weights"]
        assert torch.equal(again.encode_images(x), loaded.encode_images(x))
    other = {k: v for k, v in loaded.model.visual.state_dict().items() if not k.startswith("blocks.1.")}
    safetensors.torch.save_file(other, str(tmp_path / "short.safetensors"))
    with pytest.raises(UserError, match="tensors missing"):
        load_model(ModelSettings(model="timm:tiny-vit", pretrained=str(tmp_path / "short.safetensors")))


def test_refusals_are_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="not a pretrained tag of timm:vit_small_patch14_dinov2 .*lvd142m"):
        load_model(ModelSettings(model="timm:vit_small_patch14_dinov2", pretrained="openai"))
    with pytest.raises(UserError, match="timm has no architecture 'nope'"):
        load_model(ModelSettings(model="timm:nope", pretrained="none"))
    start = time.perf_counter()
    with pytest.raises(UserError, match="not in timm's local cache.*--pretrained PATH"):
        load_model(ModelSettings(model="timm:vit_small_patch14_dinov2", pretrained="lvd142m"))
    assert time.perf_counter() - start < 10
    with pytest.raises(UserError, match="has no text tower"):
        load_model(ModelSettings(model="timm:tiny-vit", pretrained="none")).encode_texts(["a face"])


def test_the_prefix_chooses_the_encoder_and_open_clip_stays_the_default():
    assert encoder_of("timm:tiny-vit") is ENCODERS.get("timm")
    assert encoder_of("ViT-B-32") is encoder_of("hf-hub:x/y") is ENCODERS.get("open_clip")
    loaded = load_model(ModelSettings(model="tiny-vit", pretrained="none"))
    assert loaded.has_text and loaded.identity["resize_mode"] == "shortest"


@pytest.mark.parametrize("method", ["lora", "svd"])
def test_fine_tuning_methods_target_a_timm_towers_projections(timm_cache, tmp_path, method):
    """The target sets name timm's qkv/proj Linears too, so LoRA and the SVD residual attach to a timm tower."""
    import finetune_lora
    out = tmp_path / method
    assert finetune_lora.main(["--base-cache", str(timm_cache), "--out", str(out), "--method", method, "--objective",
                               "linear", "--rank", "2", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
                               "--workers", "0", "--max-train-images", "32", "--no-extract", "--select", "last",
                               *PROTOCOL]) == 0
    record = json.loads((out / "lora.json").read_text())
    assert record["method"] == method and pd.read_csv(out / "scores.csv")["score"].notna().all()
    merged = safetensors.torch.load_file(str(out / "merged.safetensors"))
    changed = [k for k, v in merged.items() if k.startswith("visual.blocks.") and
               not torch.equal(v, load_model(ModelSettings(model="timm:tiny-vit", pretrained="none")).model
                               .state_dict()[k])]
    assert changed and all(".attn." in k for k in changed)
