"""finetune_lora.py on the tiny model: what LoRA touches, that it learns, that it resumes exactly, what it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import finetune_lora
from clipforensics.core.registry import Registry
from clipforensics.lora import checkpoint, stage
from clipforensics.lora import data as lora_data
from clipforensics.lora import model as lora
from clipforensics.lora.methods import lora as lora_method
from clipforensics.lora import targets
from clipforensics.lora.train import TrainRun, make_optimization, train_epoch
from clipforensics.data.manifest import ManifestSettings, scan
from clipforensics.data.cache import check_identity, read_cache
from clipforensics.core.errors import UserError
from clipforensics.measure.metrics import roc_auc, video_scores
from clipforensics.extract.encoders import open_clip as models
from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.extract.prompts import PROMPT_SETS, PromptSet
from clipforensics.data.scores import read_scores
from conftest import generated_cache, kill_at_first_checkpoint

ROOT = Path(__file__).resolve().parents[1]
VISION = json.loads((models.CONFIG_DIR / "tiny-vit.json").read_text())["vision_cfg"]
FAST = ["--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--rank", "8", "--alpha", "16", "--workers", "0"]
TINY_MODEL = ModelSettings(model="tiny-vit", pretrained="none")


@pytest.fixture(scope="module")
def strong_cache(tmp_path_factory) -> Path:
    """64 real videos x 3 frames, FaceSwap and NeuralTextures at 3x strength: enough for a validation split."""
    return generated_cache(tmp_path_factory, "strong", videos=64, frames=3, size=64)


def finetune(base: Path, out: Path, *extra: str) -> int:
    return finetune_lora.main(["--base-cache", str(base), "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def finished_run(strong_cache, tmp_path_factory) -> Path:
    """One uninterrupted run, with the re-extracted cache and a merged checkpoint outside the run folder."""
    out = tmp_path_factory.mktemp("runs") / "strong-lora"
    merged = out.parent / "merged-copy.safetensors"
    assert finetune(strong_cache, out, "--merge-out", str(merged)) == 0
    return out


def run_summary(run: Path) -> dict:
    return json.loads((run / "lora.json").read_text())


def tiny_detector(**overrides) -> tuple[lora.Detector, int]:
    loaded = load_model(TINY_MODEL, "cpu", "fp32")
    settings = lora.LoraSettings(base_cache="-", out="-", rank=4, alpha=8, **overrides)
    return lora.build_detector(loaded, settings), loaded.image_size


def images(size: int, n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def optimizer_steps(detector: lora.Detector, x: torch.Tensor, steps: int) -> None:
    optimizer = torch.optim.AdamW(detector.trainable().values(), lr=1e-2)
    labels = torch.arange(len(x)) % 2
    detector.train()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(detector(x), labels).backward()
        optimizer.step()


@pytest.mark.parametrize("targets, head, per_block", [("attn", "prompt", 4), ("attn+mlp", "linear", 8),
                                                    ("mlp", "prompt", 4)])
def test_a_step_changes_only_lora_and_every_lora_tensor_gets_a_gradient(targets, head, per_block):
    """per block: A and B of the fused in-projection and the out-projection (attn), of c_fc and c_proj (mlp)."""
    detector, size = tiny_detector(targets=targets, objective=head)
    frozen = {name: p.detach().clone() for name, p in detector.named_parameters() if not p.requires_grad}
    before = {name: p.detach().clone() for name, p in detector.method_tensors().items()}
    assert len(before) == per_block * VISION["layers"]
    optimizer_steps(detector, images(size), steps=2)
    grads = {name: p.grad for name, p in detector.method_tensors().items()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), "a LoRA tensor got no gradient"
    after = dict(detector.named_parameters())
    for name, value in frozen.items():
        assert torch.equal(after[name], value), f"frozen {name} changed"
    assert all(not torch.equal(after[name], value) for name, value in before.items())


def test_out_proj_alone_gets_no_gradient_and_is_refused(monkeypatch, strong_cache, tmp_path, capsys):
    target_sets = Registry("target set")
    for name in targets.TARGET_SETS:
        target_sets.register(name, targets.TARGET_SETS.get(name))
    target_sets.register("out_proj", (targets.BLOCK + r"\.attn\.out_proj",))
    monkeypatch.setattr(targets, "TARGET_SETS", target_sets)  # read by target_regex, when LoRA attaches
    monkeypatch.setattr(lora_method, "TARGET_SETS", target_sets)  # read by the method's check of the settings
    loaded = load_model(TINY_MODEL, "cpu", "fp32")
    settings = lora.LoraSettings(base_cache="-", out="-", rank=4, alpha=8, targets="out_proj")
    adapted = lora_method.METHODS.get("lora").attach(loaded.model, settings)
    detector = lora.Detector(lora_method.METHODS.get("lora"), adapted, lora.LORA_HEADS.get("prompt")(loaded, settings),
                             settings, tower_size=1)
    dead = lora_method.dead_lora_tensors(detector, loaded.image_size)
    assert dead and set(dead) == set(detector.method_tensors())
    assert finetune(strong_cache, tmp_path / "run", "--targets", "out_proj") == 2
    assert "never get a gradient" in capsys.readouterr().err


def test_merged_equals_unmerged_and_adapter_round_trip(tmp_path):
    detector, size = tiny_detector()
    x = images(size)
    optimizer_steps(detector, x, steps=3)
    detector.eval()
    with torch.no_grad():
        unmerged = detector.embed(x)
    adapter = lora_method.save_adapter(detector.adapted, tmp_path / "adapter")
    assert adapter.name == "adapter_model.safetensors" and (tmp_path / "adapter" / "adapter_config.json").exists()
    reloaded = lora_method.load_adapter(load_model(TINY_MODEL, "cpu", "fp32").model, tmp_path / "adapter")
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.get_base_model().encode_image(x), unmerged, rtol=0, atol=1e-6)
    merged_path = checkpoint.save_merged(detector, tmp_path / "merged.safetensors")
    merged = load_model(ModelSettings(model="tiny-vit", pretrained=str(merged_path)), "cpu", "fp32")
    diff = (merged.encode_images(x) - unmerged).abs().max().item()
    assert 0 <= diff < 1e-5
    base = load_model(TINY_MODEL, "cpu", "fp32")
    assert (base.encode_images(x) - unmerged).abs().max().item() > 1e-3  # the adapter did change the embedding


def test_prompt_classes_come_from_labels_not_order(monkeypatch):
    loaded = load_model(TINY_MODEL, "cpu", "fp32")
    classes = lora.prompt_classes(loaded, "v2")
    fake_text = loaded.encode_texts(["AI-Generated face"])[0]
    torch.testing.assert_close(classes[1], F.normalize(fake_text, dim=0))
    detector, size = tiny_detector()
    x = images(size)
    detector.eval()
    with torch.no_grad():
        before = detector(x)
    original = PROMPT_SETS.get("v2")
    monkeypatch.setitem(PROMPT_SETS, "v2", PromptSet("v2", original.texts[::-1], original.labels[::-1]))
    torch.testing.assert_close(lora.prompt_classes(loaded, "v2"), classes, rtol=0, atol=0)
    swapped, _ = tiny_detector()
    swapped.eval()
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), before, rtol=0, atol=0)


def test_epoch_order_is_balanced_and_a_function_of_seed_and_epoch():
    labels = np.array([0] * 30 + [1] * 6)
    order = lora_data.epoch_order(labels, seed=3, epoch=2)
    assert len(order) == 36 and (labels[order] == 1).sum() == 18
    assert set(order[labels[order] == 1]) == set(range(30, 36))
    np.testing.assert_array_equal(order, lora_data.epoch_order(labels, seed=3, epoch=2))
    assert not np.array_equal(order, lora_data.epoch_order(labels, seed=3, epoch=3))


def test_an_epoch_is_a_function_of_seed_and_epoch_and_leaves_torchs_rng_alone(synthetic_root):
    """MLP targets with heavy dropout: the mask must come from (seed, epoch), not from whatever the caller drew."""
    settings = lora.LoraSettings(base_cache="-", out="-", rank=4, alpha=8, targets="mlp", dropout=0.5, batch_size=8,
                                 workers=0)
    run = TrainRun.build(load_model(TINY_MODEL, "cpu", "fp32"), settings, synthetic_root,
                         scan(ManifestSettings(data_root=str(synthetic_root))))
    start = run.detector.trainable_state()
    caller = torch.get_rng_state()
    first = train_epoch(run, make_optimization(run), epoch=1, max_steps=2)
    assert torch.equal(torch.get_rng_state(), caller)
    run.detector.load_trainable_state(start)
    torch.manual_seed(12345)
    again = train_epoch(run, make_optimization(run), epoch=1, max_steps=2)
    assert again["loss"] == first["loss"]
    run.detector.load_trainable_state(start)
    assert train_epoch(run, make_optimization(run), epoch=2, max_steps=2)["loss"] != first["loss"]


def test_training_beats_the_zero_shot_prompt_head(finished_run):
    log = pd.read_csv(finished_run / "train_log.csv")
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    summary = run_summary(finished_run)
    best = log.set_index("epoch").loc[summary["best_epoch"]]
    zero_shot = log.set_index("epoch").loc[0]
    assert best["val_video_auc"] > zero_shot["val_video_auc"] + 0.15
    assert best["val_frame_auc"] > zero_shot["val_frame_auc"] + 0.15
    assert log["loss"].iloc[-1] < log["loss"].iloc[1]


def test_outputs_of_a_finished_run(finished_run, strong_cache):
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "head.safetensors",
                 "lora.json", "train_log.csv", "train_curve.png", "scores.csv", "scores.json", "checkpoint.pt"):
        assert (finished_run / name).is_file(), name
    assert not list(finished_run.glob(".*tmp*"))
    summary = run_summary(finished_run)
    width, rank = VISION["width"], 8
    per_block = rank * (width + 3 * width) + rank * (width + width)  # fused in-projection, out-projection
    assert summary["base"]["cache"] == str(strong_cache.resolve()) and summary["settings"]["targets"] == "attn"
    assert summary["parameters"]["lora"] == VISION["layers"] * per_block
    scores = read_scores(finished_run / "scores.csv")
    assert set(scores["split"]) == {"val", "test"}
    val = scores[scores["split"] == "val"]
    videos = video_scores(val, "mean")
    best = summary["best"]
    assert roc_auc(videos["label"], videos["score"]) == pytest.approx(best["val_video_auc"])
    assert roc_auc(val["label"], val["score"]) == pytest.approx(best["val_frame_auc"])
    head = load_file(str(finished_run / "head.safetensors"))
    assert set(head) == {"classes", "logit_scale"}
    assert (finished_run.parent / "merged-copy.safetensors").read_bytes() == (
        finished_run / "merged.safetensors").read_bytes()


def test_reextracted_cache_is_linked_to_the_base_and_is_not_the_base(finished_run, strong_cache):
    summary = run_summary(finished_run)
    path = Path(summary["lora_cache"])
    assert path.parent == strong_cache.parent and path.name.startswith("strong-lora-")
    base, new = read_cache(strong_cache), read_cache(path)
    a = new.attrs
    assert a["base_cache"] == str(strong_cache.resolve()) and a["base_manifest_hash"] == base.attrs["manifest_hash"]
    assert a["adapter_sha"] == summary["adapter_sha"] and a["lora_run"] == str(finished_run.resolve())
    assert a["manifest_hash"] == base.attrs["manifest_hash"] and a["random_weights"]
    assert a["precision"] == base.attrs["precision"] and set(new.prompts) == set(base.prompts)
    assert new.manifest["path"].tolist() == base.manifest["path"].tolist()
    assert np.abs(new.embeddings.astype(np.float32) - base.embeddings.astype(np.float32)).max() > 1e-2
    with pytest.raises(UserError, match="other settings"):
        check_identity(a, base.identity(), what=str(path))


def test_resume_after_a_crash_equals_the_uninterrupted_run(finished_run, strong_cache, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    original = stage.save_checkpoint

    def crash_after_epoch_1(run, optim, state):
        original(run, optim, state)
        if state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(stage, "save_checkpoint", crash_after_epoch_1)
    assert finetune(strong_cache, out, "--no-extract") == 130
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "lora.json").exists()
    monkeypatch.setattr(stage, "save_checkpoint", original)
    trained, train_epoch = [], stage.train_epoch

    def counted(run, optim, epoch, **kw):
        trained.append(epoch)
        return train_epoch(run, optim, epoch, **kw)

    monkeypatch.setattr(stage, "train_epoch", counted)
    assert finetune(strong_cache, out, "--no-extract") == 0
    assert trained == [2, 3]
    metrics = ["epoch", "loss", "val_frame_auc", "val_video_auc"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "train_log.csv")[metrics],
                                  pd.read_csv(finished_run / "train_log.csv")[metrics])
    assert (run_summary(out)["best_epoch"]
            == run_summary(finished_run)["best_epoch"])
    resumed, reference = (load_file(str(d / "adapter/adapter_model.safetensors")) for d in (out, finished_run))
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), pd.read_csv(finished_run / "scores.csv"))


def test_other_settings_are_refused_unless_overwrite(finished_run, strong_cache, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    assert finetune(strong_cache, out, "--no-extract", "--train-seed", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "other settings" in err[-1] and "seed" in err[-1]
    assert finetune(strong_cache, out, "--no-extract", "--train-seed", "1", "--epochs", "1", "--overwrite") == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("args, message", [
    (["--objective", "mlp"], "unknown objective 'mlp'"),
    (["--prompt-set", "v9"], "unknown prompt set 'v9'"),
    (["--targets", "qkv"], "unknown target set 'qkv'"),
    (["--rank", "0"], "--rank 0"),
])
def test_unknown_names_are_one_line_errors(strong_cache, tmp_path, capsys, args, message):
    assert finetune(strong_cache, tmp_path / "run", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "run").exists()


def test_bad_base_cache_and_wrong_data_root_are_one_line_errors(strong_cache, synthetic_root, tmp_path, capsys):
    assert finetune(tmp_path / "missing.h5", tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cache not found" in err[0]
    assert finetune(strong_cache, tmp_path / "run", "--data-root", str(synthetic_root)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not hold the frames" in err[0]


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_to_the_same_result(finished_run, strong_cache, tmp_path):
    out = tmp_path / "killed"
    kill_at_first_checkpoint(["--base-cache", str(strong_cache), "--out", str(out), *FAST, "--no-extract"], out)
    assert finetune(strong_cache, out, "--no-extract") == 0
    assert run_summary(out)["best"]["val_video_auc"] == run_summary(finished_run)["best"]["val_video_auc"]
    resumed, reference = (load_file(str(d / "adapter/adapter_model.safetensors")) for d in (out, finished_run))
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_a_checkpoint_of_other_settings_is_refused_naming_every_differing_field(tmp_path):
    from clipforensics.core.io import claim_output

    recorded = {"cache": "a.h5", "splits": "1a2b", "protocol": {"train_fakes": ["FaceSwap"], "split_seed": 0},
                "lora": {"seed": 0, "rank": 4, "lr": 0.001, "epochs": 3, "targets": "attn"}}
    run_dir = claim_output(tmp_path / "run", stage="finetune_lora")
    run_dir.own(checkpoint.CHECKPOINT)
    torch.save({"version": checkpoint.CHECKPOINT_VERSION, "identity": json.dumps(recorded), "epoch": 1,
                "trainable": {}, "history": [], "best_epoch": 1, "best": {}}, run_dir.path / checkpoint.CHECKPOINT)
    new = {**recorded, "splits": "9f8e", "protocol": {"train_fakes": ["Deepfakes"], "split_seed": 3},
           "lora": {"seed": 1, "rank": 8, "lr": 0.01, "epochs": 3, "targets": "mlp"}}
    expected = ["lora.lr: 0.001 != 0.01", "lora.rank: 4 != 8", "lora.seed: 0 != 1", "lora.targets: 'attn' != 'mlp'",
                "protocol.split_seed: 0 != 3", "protocol.train_fakes: ['FaceSwap'] != ['Deepfakes']",
                "splits: '1a2b' != '9f8e'"]
    with pytest.raises(UserError) as refused:
        checkpoint.refuse_other_checkpoint(new, run_dir, overwrite=False)
    assert "other settings" in str(refused.value) and "; ".join(expected) in str(refused.value)
    assert checkpoint.claim_checkpoint(recorded, run_dir, overwrite=False)["epoch"] == 1
    checkpoint.refuse_other_checkpoint(new, run_dir, overwrite=True)  # replaced only when training starts
    assert (run_dir.path / checkpoint.CHECKPOINT).is_file()
    assert checkpoint.claim_checkpoint(new, run_dir, overwrite=True) is None
    assert not (run_dir.path / checkpoint.CHECKPOINT).exists()
