"""Model registry: random seeded weights, local checkpoints, offline failure, precision."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from clipforensics.core.errors import UserError
from clipforensics.extract import models
from clipforensics.extract.encoders import open_clip as open_clip_encoder, weights
from clipforensics.extract.encoders import load_model
from clipforensics.extract.models import torch_threads
from clipforensics.extract.settings import ModelSettings

TINY = ModelSettings(model="tiny-vit", pretrained="none")


def images(n: int = 6, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_random_weights_are_reproducible_from_the_init_seed():
    x = images()
    a = load_model(TINY).encode_images(x)
    b = load_model(TINY).encode_images(x)
    c = load_model(ModelSettings(model="tiny-vit", pretrained="none", init_seed=1)).encode_images(x)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_random_weights_are_said_once_with_the_seed(capsys, caplog):
    """Our warning names the seed; open_clip's own "No pretrained weights loaded" line would say it a second time."""
    with caplog.at_level(logging.WARNING):
        load_model(TINY)
    err = capsys.readouterr().err
    assert err.count("RANDOM WEIGHTS") == 1 and "init seed 0" in err
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
    open_clip.create_model("tiny-vit", pretrained=None)  # the filter is gone afterwards: open_clip's line is back
    assert [r for r in caplog.records if "No pretrained weights" in r.getMessage()]


def test_random_init_does_not_disturb_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model(TINY)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_checkpoint_round_trip(tmp_path, suffix):
    source = load_model(ModelSettings(model="tiny-vit", pretrained="none", init_seed=7))
    state = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    torch.save(state, path) if suffix == ".pt" else save_file(state, str(path))
    loaded = load_model(ModelSettings(model="tiny-vit", pretrained=str(path)))
    x = images()
    assert torch.equal(source.encode_images(x), loaded.encode_images(x))
    assert loaded.identity["weights_kind"] == "file" and len(loaded.identity["weights_fingerprint"]) == 16
    assert not loaded.identity["random_weights"]


def test_missing_tag_fails_fast_offline_with_instructions():
    start = time.perf_counter()
    with pytest.raises(UserError, match="--pretrained PATH"):
        load_model(ModelSettings(model="ViT-B-32", pretrained="openai"))
    assert time.perf_counter() - start < 10


def test_offline_mode_is_scoped_to_the_weights_download(monkeypatch):
    """Without a network, a tag is looked up offline, and the process's own hub setting is back afterwards."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    seen = []

    def no_weights(*args, **kwargs):
        seen.append(hub.HF_HUB_OFFLINE)
        raise RuntimeError("not in the local cache")

    monkeypatch.setattr(open_clip_encoder.open_clip, "create_model_and_transforms", no_weights)
    with pytest.raises(UserError, match="--pretrained PATH"):
        load_model(ModelSettings(model="ViT-B-32", pretrained="openai"))
    assert seen == [True] and hub.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ


def test_importing_registers_nothing_with_open_clip():
    code = ("import open_clip; from clipforensics.extract.encoders import open_clip as models; "
            "assert 'tiny-vit' not in open_clip.list_models(); assert 'tiny-vit' in models.list_models()")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_thread_count_is_restored():
    before = torch.get_num_threads()
    with pytest.raises(ValueError), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise ValueError
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("settings, message", [
    (ModelSettings(model="no-such-model", pretrained="none"), "unknown model"),
    (ModelSettings(model="ViT-B-32", pretrained="no_such_tag"), "not a pretrained tag"),
    (ModelSettings(model="tiny-vit", pretrained="/no/such/file.pt"), "not found"),
])
def test_bad_model_settings_are_user_errors(settings, message):
    with pytest.raises(UserError, match=message):
        load_model(settings)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(UserError, match="bf16"):
        load_model(TINY, "cpu", "fp16")


def _cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()


@pytest.mark.parametrize("name, size", [("tiny-vit", 64), pytest.param("ViT-B-32", 224, marks=pytest.mark.slow)])
def test_bf16_embeddings_match_fp32(name, size):
    """bf16 weights on the CPU (what `auto` takes where they are faster) stay within cosine 0.999 of fp32."""
    settings = ModelSettings(model=name, pretrained="none")
    x = images(4, size)
    fp32 = load_model(settings, "cpu", "fp32").encode_images(x)
    bf16 = load_model(settings, "cpu", "bf16").encode_images(x)
    assert _cosines(fp32, bf16).min() >= 0.999


@pytest.mark.parametrize("name", ["tiny-vit", pytest.param("ViT-B-32", marks=pytest.mark.slow)])
def test_sequence_first_text_tower_gives_the_same_embeddings(name):
    """load_model switches the text blocks to sequence-first for speed; the embeddings must not move."""
    import open_clip

    loaded = load_model(ModelSettings(model=name, pretrained="none"), "cpu", "fp32")
    assert loaded.model.transformer.batch_first is False
    torch.manual_seed(0)
    reference = open_clip.create_model(name, pretrained=None).eval()
    loaded.model.load_state_dict(reference.state_dict())
    texts = ["Authentic face", "AI-Generated face", "a deepfake of a person's face"]
    with torch.inference_mode():
        expected = reference.encode_text(loaded.tokenizer(texts))
    assert torch.equal(loaded.encode_texts(texts), expected)
