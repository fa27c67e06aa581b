"""Fine-tuning methods (`finetune_lora.py --method`): each changes the tower only where it says, trains as many
parameters as the model's shapes give, and a layernorm run keeps the run-folder contract LoRA keeps (record, merged
open_clip weights, cache, scores, resume, detect.py), with GenD's losses computed as GenD computes them."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import detect as detect_cli
import finetune_lora
from clipforensics.core.errors import UserError
from clipforensics.core.settings import without_execution_only
from clipforensics.data.cache import read_cache
from clipforensics.extract.encoders import open_clip as models
from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.lora import checkpoint
from clipforensics.lora import model as lora
from clipforensics.core.paths import sha256_file
from clipforensics.lora.methods import METHODS
from clipforensics.lora.methods.layernorm import alignment, uniformity
from conftest import kill_at_first_checkpoint
from test_lora import strong_cache  # noqa: F401  (the module-scoped fixture: a learnable cache)

CONFIG = json.loads((models.CONFIG_DIR / "tiny-vit.json").read_text())
VISION, EMBED = CONFIG["vision_cfg"], int(CONFIG["embed_dim"])
TINY_MODEL = ModelSettings(model="tiny-vit", pretrained="none")
LAYERNORM = ["--method", "layernorm", "--objective", "linear", "--uniformity-weight", "0.5", "--alignment-weight", "0.1",
             "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--workers", "0"]


def settings(**overrides) -> lora.LoraSettings:
    return lora.LoraSettings(base_cache="-", out="-", **overrides)


def base_state() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_model(TINY_MODEL, "cpu", "fp32").model.state_dict().items()}


def trained_detector(**overrides) -> lora.Detector:
    """A detector after a few large AdamW steps on random images, so every trainable tensor has moved."""
    loaded = load_model(TINY_MODEL, "cpu", "fp32")
    detector = lora.build_detector(loaded, settings(**overrides))
    x = torch.randn(6, 3, loaded.image_size, loaded.image_size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(len(x)) % 2
    optimizer = torch.optim.AdamW(detector.trainable().values(), lr=1e-2)
    detector.train()
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        (F.cross_entropy(detector(x), labels) + detector.extra_loss(labels)).backward()
        optimizer.step()
    return detector


def layernorm_names(layers: int) -> set[str]:
    blocks = {f"visual.transformer.resblocks.{i}.{ln}" for i in range(layers) for ln in ("ln_1", "ln_2")}
    return {f"{m}.{kind}" for m in blocks | {"visual.ln_pre", "visual.ln_post"} for kind in ("weight", "bias")}


def changed(merged: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    assert merged.keys() == base.keys()
    return {k: merged[k] - base[k] for k in base if not torch.equal(merged[k], base[k])}


def numeric_rank(delta: torch.Tensor) -> int:
    s = torch.linalg.svdvals(delta.double())
    return int((s > 1e-4 * s[0]).sum())


WIDTH, LAYERS, MLP_WIDTH = VISION["width"], VISION["layers"], int(VISION["width"] * VISION.get("mlp_ratio", 4.0))


@pytest.mark.parametrize("overrides, allowed, count", [
    ({"method": "lora", "rank": 4, "alpha": 8, "targets": "attn"},
     {"attn.in_proj_weight", "attn.out_proj.weight"}, LAYERS * 4 * ((WIDTH + 3 * WIDTH) + (WIDTH + WIDTH))),
    ({"method": "lora", "rank": 4, "alpha": 8, "targets": "mlp"},
     {"mlp.c_fc.weight", "mlp.c_proj.weight"}, LAYERS * 4 * 2 * (WIDTH + MLP_WIDTH)),
    ({"method": "dora", "rank": 4, "alpha": 8, "targets": "mlp"},
     {"mlp.c_fc.weight", "mlp.c_proj.weight"}, LAYERS * (4 * 2 * (WIDTH + MLP_WIDTH) + MLP_WIDTH + WIDTH)),
])
def test_lora_and_dora_change_only_their_targets(overrides, allowed, count):
    """LoRA: each delta of rank <= r; DoRA: the targeted weights only (magnitudes rescale rows: any rank)."""
    detector = trained_detector(**overrides)
    assert sum(p.numel() for p in detector.method_tensors().values()) == count
    assert lora.parameter_counts(detector)[overrides["method"]] == count
    deltas = changed(detector.method.merge(detector.adapted).state_dict(), base_state())
    expected = {f"visual.transformer.resblocks.{i}.{name}" for i in range(LAYERS) for name in allowed}
    assert set(deltas) == expected
    if overrides["method"] == "lora":
        assert max(numeric_rank(d) for d in deltas.values()) <= overrides["rank"]


@pytest.mark.parametrize("overrides", [{"method": "lora", "rank": 4, "alpha": 8},
                                       {"method": "dora", "rank": 4, "alpha": 8, "targets": "mlp"},
                                       {"method": "layernorm"}])
def test_a_saved_change_reloads_to_the_same_merged_model(overrides, tmp_path):
    """What detect.py does: the saved change on a fresh base model, merged, equals the trained model merged."""
    detector = trained_detector(**overrides)
    method = detector.method
    assert method.save(detector.adapted, tmp_path, detector.settings) == tmp_path / method.change_file
    fresh = load_model(TINY_MODEL, "cpu", "fp32").model.requires_grad_(False)
    reloaded = method.merge(method.load(fresh, tmp_path, detector.settings)).state_dict()
    merged = method.merge(detector.adapted).state_dict()
    assert reloaded.keys() == merged.keys()
    for name, value in merged.items():
        torch.testing.assert_close(reloaded[name], value, rtol=0, atol=1e-6)


def test_layernorm_changes_only_layernorm_tensors_and_counts_them():
    detector = trained_detector(method="layernorm", uniformity_weight=0.5, alignment_weight=0.1)
    names = layernorm_names(LAYERS)
    assert {k.removeprefix("adapted.") for k in detector.method_tensors()} == names
    assert lora.parameter_counts(detector)["layernorm"] == (2 * LAYERS + 2) * 2 * WIDTH
    assert set(changed(detector.method.merge(detector.adapted).state_dict(), base_state())) == names


def test_vit_l_14_layernorm_share_is_gends():
    """GenD (README): LayerNorm tuning trains 0.03 % of the parameters of CLIP ViT-L/14's vision model. Built on the
    meta device: shapes only, no memory, no weights."""
    clip = open_clip.create_model("ViT-L-14", pretrained=None, device="meta")
    clip.requires_grad_(False)
    adapted = METHODS.get("layernorm").attach(clip, settings(method="layernorm"))
    count = sum(p.numel() for p in METHODS.get("layernorm").trainable(adapted).values())
    assert count == (2 * 24 + 2) * 2 * 1024 == 102_400
    tower = sum(p.numel() for p in clip.visual.parameters())
    assert tower == 303_966_208
    assert 100 * count / tower == pytest.approx(0.0337, abs=5e-5)
    assert round(100 * count / tower, 2) == 0.03


def test_gend_losses_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 5))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    labels = np.array([0, 1, 0, 0, 1, 1, 0])
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)]
    align = np.mean([np.sum((z[i] - z[j]) ** 2) for i, j in pairs if labels[i] == labels[j]])
    uniform = np.log(np.mean([np.exp(-2 * np.sum((z[i] - z[j]) ** 2)) for i, j in pairs]))
    zt, lt = torch.from_numpy(z), torch.from_numpy(labels)
    assert alignment(zt, lt).item() == pytest.approx(align, rel=1e-9)
    assert uniformity(zt).item() == pytest.approx(uniform, rel=1e-9)
    method = METHODS.get("layernorm")
    raw = zt * torch.from_numpy(rng.uniform(0.5, 3.0, size=(7, 1)))  # the method normalises the features itself
    extra = method.extra_loss(None, raw.float(), lt, settings(uniformity_weight=0.5, alignment_weight=0.1))
    assert extra.item() == pytest.approx(0.5 * uniform + 0.1 * align, rel=1e-5)
    assert method.extra_loss(None, raw.float(), lt, settings()) is None
    assert alignment(zt[:2], torch.tensor([0, 1])).item() == 0 and uniformity(zt[:1]).item() == 0


def test_the_training_step_adds_the_methods_loss(synthetic_root):
    from clipforensics.data.manifest import ManifestSettings, scan
    from clipforensics.lora.train import TrainRun, make_optimization, train_step

    run = TrainRun.build(load_model(TINY_MODEL, "cpu", "fp32"),
                         settings(method="layernorm", uniformity_weight=0.5, alignment_weight=0.1, workers=0),
                         synthetic_root, scan(ManifestSettings(data_root=str(synthetic_root))))
    x = torch.randn(8, 3, run.image_size, run.image_size, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1] * 4)
    run.detector.train()
    with torch.no_grad():
        z = F.normalize(run.detector.embed(x), dim=1)
        expected = (F.cross_entropy(run.detector.head(run.detector.embed(x)), labels)
                    + 0.5 * uniformity(z) + 0.1 * alignment(z, labels)).item()
    assert train_step(run, make_optimization(run), x, labels) == pytest.approx(expected, rel=1e-6)


def test_every_method_option_is_a_setting_and_foreign_options_are_refused():
    fields = {f.name for f in dataclasses.fields(lora.LoraSettings)}
    for name, method in METHODS.items():
        assert set(method.takes) <= fields, name
    for given, message in (({"method": "layernorm", "alpha": 8.0}, "--alpha is not an option of --method layernorm"),
                           ({"uniformity_weight": 0.5}, "--uniformity-weight is not an option of --method lora"),
                           ({"method": "layernorm", "rank": 4, "targets": "mlp"},
                            "--rank and --targets are not options of --method layernorm"),
                           ({"method": "dora"}, "--method dora takes MLP targets only"),
                           ({"method": "nope"}, "unknown fine-tuning method 'nope'")):
        with pytest.raises(UserError, match=message):
            lora.check_settings(settings(**given))
    lora.check_settings(settings(method="dora", targets="mlp"))


def test_foreign_option_is_one_line_on_the_command_line(tmp_path, capsys):
    assert finetune_lora.main(["--base-cache", str(tmp_path / "x.h5"), "--out", str(tmp_path / "run"),
                               "--method", "layernorm", "--alpha", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --alpha is not an option of --method layernorm"]


def test_method_and_rank_are_part_of_the_checkpoint_identity(tmp_path):
    from clipforensics.core.io import claim_output

    run_dir = claim_output(tmp_path / "run", stage="finetune_lora")
    run_dir.own(checkpoint.CHECKPOINT)
    recorded = {"lora": without_execution_only(settings(method="layernorm"))}
    torch.save({"version": checkpoint.CHECKPOINT_VERSION, "identity": json.dumps(recorded), "epoch": 1,
                "trainable": {}, "history": [], "best_epoch": 1, "best": {}}, run_dir.path / checkpoint.CHECKPOINT)
    with pytest.raises(UserError) as refused:
        checkpoint.refuse_other_checkpoint({"lora": without_execution_only(settings(rank=4))}, run_dir, False)
    assert "lora.method: 'layernorm' != 'lora'; lora.rank: 32 != 4" in str(refused.value)


@pytest.fixture(scope="module")
def layernorm_run(strong_cache, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("runs") / "strong-layernorm"
    assert finetune_lora.main(["--base-cache", str(strong_cache), "--out", str(out), *LAYERNORM]) == 0
    return out


def test_a_layernorm_run_keeps_the_run_folder_contract(layernorm_run, strong_cache):  # noqa: F811
    record = json.loads((layernorm_run / "lora.json").read_text())
    assert record["method"] == record["settings"]["method"] == "layernorm"
    assert record["settings"]["uniformity_weight"] == 0.5 and record["settings"]["alignment_weight"] == 0.1
    base = load_model(TINY_MODEL, "cpu", "fp32").model
    tower = sum(p.numel() for p in base.visual.parameters())
    n = (2 * LAYERS + 2) * 2 * WIDTH
    assert record["parameters"]["layernorm"] == n and record["parameters"]["head"] == 2 * EMBED + 2  # linear head
    assert record["parameters"]["tower"] == tower
    assert record["parameters"]["method_share_of_tower"] == pytest.approx(100 * n / tower)
    change = layernorm_run / "layernorm.safetensors"
    assert record["adapter_sha"] == sha256_file(change) and not (layernorm_run / "adapter").exists()
    saved = load_file(str(change))
    assert set(saved) == layernorm_names(LAYERS)
    models.model_config("tiny-vit")  # registers the package's configs with open_clip
    merged_file = str(layernorm_run / "merged.safetensors")
    merged, _, _ = open_clip.create_model_and_transforms("tiny-vit", pretrained=merged_file)
    deltas = changed(merged.state_dict(), base.state_dict())
    assert set(deltas) == set(saved)
    assert all(torch.equal(merged.state_dict()[k], saved[k]) for k in saved)
    cache = read_cache(record["lora_cache"])
    assert cache.attrs["adapter_sha"] == record["adapter_sha"]
    assert cache.attrs["lora_run"] == str(layernorm_run.resolve())
    scores = pd.read_csv(layernorm_run / "scores.csv")
    assert set(scores["split"]) == {"val", "test"}


@pytest.mark.slow
def test_a_layernorm_run_resumes_after_kill_9_to_the_same_result(layernorm_run, strong_cache, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    kill_at_first_checkpoint(["--base-cache", str(strong_cache), "--out", str(out), *LAYERNORM, "--no-extract"], out)
    assert finetune_lora.main(["--base-cache", str(strong_cache), "--out", str(out), *LAYERNORM, "--no-extract"]) == 0
    metrics = ["epoch", "loss", "val_frame_auc", "val_video_auc"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "train_log.csv")[metrics],
                                  pd.read_csv(layernorm_run / "train_log.csv")[metrics])
    assert (out / "layernorm.safetensors").read_bytes() == (layernorm_run / "layernorm.safetensors").read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), pd.read_csv(layernorm_run / "scores.csv"))


def test_resuming_with_another_method_or_rank_is_refused_naming_the_fields(layernorm_run, strong_cache, tmp_path,
                                                                          capsys):  # noqa: F811
    out = tmp_path / "copy"
    shutil.copytree(layernorm_run, out)
    assert finetune_lora.main(["--base-cache", str(strong_cache), "--out", str(out), "--method", "lora", "--rank", "4",
                               "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--workers", "0",
                               "--no-extract"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "other settings" in err and "lora.method: 'layernorm' != 'lora'" in err and "lora.rank: 32 != 4" in err


def test_detect_rebuilds_a_layernorm_run_and_scores_like_its_table(layernorm_run, strong_cache, tmp_path):  # noqa: F811
    scores = pd.read_csv(layernorm_run / "scores.csv", keep_default_na=False)
    expected = scores[scores.split == "test"].groupby("video")["score"].mean()
    videos = list(expected.index[:: max(1, len(expected) // 6)])
    root = Path(read_cache(strong_cache).attrs["data_root"])
    assert detect_cli.main(["--run", str(layernorm_run), *(str(root / v) for v in videos), "--out",
                            str(tmp_path / "out"), "--workers", "0", "--batch-size", "16"]) == 0
    found = pd.read_csv(tmp_path / "out" / "detections.csv", keep_default_na=False)
    found.index = [str(Path(p).relative_to(root)) for p in found.input]
    np.testing.assert_allclose(found.loc[videos, "score"].astype(float), expected.loc[videos], atol=1e-4, rtol=0)
