"""The one precision rule (`resolve_precision`): every branch forced, the calibration remembered."""

from __future__ import annotations

import pytest
import torch

from clipforensics.core.errors import UserError
from clipforensics.extract import models
from clipforensics.extract.encoders import load_model
from clipforensics.extract.models import resolve_precision
from clipforensics.extract.settings import ModelSettings

CPU = torch.device("cpu")
TINY = ModelSettings(model="tiny-vit", pretrained="none")


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def cpu(monkeypatch, native: bool | None, what: str = "TEST") -> None:
    monkeypatch.setattr(models, "cpu_bf16_support", lambda: (native, what))


def timings(fp32: float, bf16: float, calls: list | None = None):
    def calibrate() -> dict[str, float]:
        if calls is not None:
            calls.append(1)
        return {"fp32": fp32, "bf16": bf16}
    return calibrate


def never() -> dict[str, float]:
    raise AssertionError("calibration must not run here")


def test_cpu_without_native_bf16_gets_fp32_without_calibrating(monkeypatch):
    cpu(monkeypatch, False, "AVX2")
    choice = resolve_precision("auto", CPU, "m", never)
    assert choice.precision == "fp32" and "AVX2" in choice.reason and "no native bf16" in choice.reason


@pytest.mark.parametrize("fp32, bf16, expect", [(10.0, 25.0, "bf16"), (10.0, 10.2, "fp32"), (10.0, 3.0, "fp32")])
def test_native_bf16_cpu_follows_the_calibration(monkeypatch, fp32, bf16, expect):
    cpu(monkeypatch, True, "AVX512 + AVX512_BF16")
    choice = resolve_precision("auto", CPU, "m", timings(fp32, bf16))
    assert choice.precision == expect and f"{bf16:.1f}" in choice.reason and "measured now" in choice.reason


def test_calibration_is_remembered_per_machine_and_model(monkeypatch, tmp_path):
    cpu(monkeypatch, True)
    calls: list = []
    first = resolve_precision("auto", CPU, "m", timings(10, 30, calls))
    again = resolve_precision("auto", CPU, "m", never)
    assert first.precision == again.precision == "bf16" and "remembered" in again.reason and len(calls) == 1
    other_model = resolve_precision("auto", CPU, "other", timings(30, 10, calls))
    assert other_model.precision == "fp32" and len(calls) == 2
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    assert resolve_precision("auto", CPU, "m", timings(30, 10, calls)).precision == "fp32" and len(calls) == 3
    assert (tmp_path / "xdg" / "clipforensics" / "precision.json").exists()


def test_native_bf16_without_a_model_to_time_trusts_the_hardware(monkeypatch):
    cpu(monkeypatch, True)
    assert resolve_precision("auto", CPU).precision == "bf16"
    cpu(monkeypatch, None, "arm64 DEFAULT")
    assert resolve_precision("auto", CPU).precision == "fp32"


def test_unknown_hardware_is_calibrated(monkeypatch):
    cpu(monkeypatch, None, "arm64 SVE256")
    assert resolve_precision("auto", CPU, "m", timings(10, 20)).precision == "bf16"


@pytest.mark.parametrize("bf16_ok, expect", [(True, "bf16"), (False, "fp16")])
def test_cuda_auto_takes_what_the_gpu_supports(monkeypatch, bf16_ok, expect):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    choice = resolve_precision("auto", torch.device("cuda"), "m", never)
    assert choice.precision == expect and "Test GPU" in choice.reason


def test_explicit_choices_are_kept_or_refused(monkeypatch):
    cpu(monkeypatch, False, "AVX2")
    assert resolve_precision("bf16", CPU, "m", never).precision == "bf16"
    with pytest.raises(UserError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(UserError, match="unknown precision"):
        resolve_precision("int8", CPU)


@pytest.mark.parametrize("native, speeds, expect", [(False, None, torch.float32), (True, (5.0, 50.0), torch.bfloat16),
                                                    (True, (50.0, 5.0), torch.float32)])
def test_load_model_runs_at_the_resolved_precision(monkeypatch, native, speeds, expect):
    cpu(monkeypatch, native)
    monkeypatch.setattr(models, "calibrate_cpu", lambda *a, **k: dict(zip(("fp32", "bf16"), speeds)) if speeds
                        else never())
    loaded = load_model(TINY, "cpu", "auto")
    assert next(loaded.model.parameters()).dtype == expect and loaded.precision_reason.startswith("auto")
    assert loaded.identity["precision"] == {torch.float32: "fp32", torch.bfloat16: "bf16"}[expect]


def test_calibration_times_both_precisions_on_a_copy():
    loaded = load_model(TINY, "cpu", "fp32")
    before = {k: v.clone() for k, v in loaded.model.visual.state_dict().items()}
    speeds = models.calibrate_cpu(loaded.model.visual, loaded.image_size, batch=2, rounds=1)
    assert set(speeds) == {"fp32", "bf16"} and min(speeds.values()) > 0
    after = loaded.model.visual.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)


def test_torchrun_ranks_take_rank_0s_choice(monkeypatch):
    """Each rank calibrating for itself could disagree; followers load at what rank 0 broadcasts."""
    from clipforensics.extract import run
    from clipforensics.core.shards import Shard

    cpu(monkeypatch, True)
    monkeypatch.setattr(models, "calibrate_cpu", lambda *a, **k: never())
    monkeypatch.setattr(Shard, "broadcast", lambda self, value: ("bf16", "auto: rank 0 timed it"))
    loaded = run.load_agreed(TINY, Shard(1, 2, torchrun=True), "cpu", "auto")
    assert loaded.precision == "bf16" and loaded.precision_reason == "rank 0 chose: auto: rank 0 timed it"
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
