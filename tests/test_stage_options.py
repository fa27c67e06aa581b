"""Options of extract_features.py, finetune_lora.py and detect.py after the renames of issue 23 (one meaning per
option name): each old name answers with its new name (exit 2), the new names reach the settings, and records
written before the renames (a LoRA run's lora.json and checkpoint, a cache's settings) still read as they meant."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detect
import extract_features
import finetune_lora
from clipforensics.core.commands import parse_command
from clipforensics.core.settings import from_namespace
from clipforensics.detect.settings import DetectSettings
from clipforensics.extract.settings import ExtractSettings
from clipforensics.lora.methods import METHODS
from clipforensics.lora.settings import LoraSettings, checkpoint_identity, method_names
from clipforensics.lora.stage import Base
from clipforensics.runs.base import Run
from clipforensics.runs.kinds import RUN_KINDS
from clipforensics.runs.tuned import run_settings, tower_precision

EXTRACT = ["--data-root", "d", "--out", "c.h5"]
LORA = ["--base-cache", "c.h5", "--out", "r"]
DETECT = ["--run", "r", "face.png"]


@pytest.mark.parametrize("main, argv, old, new", [
    (extract_features.main, [*EXTRACT, "--limit", "8"], "--limit", "--max-images"),
    (extract_features.main, ["merge", *EXTRACT, "--limit=8"], "--limit", "--max-images"),
    (finetune_lora.main, [*LORA, "--head", "linear"], "--head", "--objective"),
    (finetune_lora.main, [*LORA, "--amp", "fp32"], "--amp", "--train-precision"),
    (finetune_lora.main, [*LORA, "--seed", "3"], "--seed", "--train-seed"),
    (detect.main, [*DETECT, "--frames", "4"], "--frames", "--frames-per-video"),
])
def test_an_old_option_name_answers_with_its_new_name(main, argv, old, new, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {old} is now {new}")


def test_the_new_names_parse_into_the_settings() -> None:
    _, ns = parse_command(extract_features.COMMANDS, "extract", [*EXTRACT, "--max-images", "8"])
    assert from_namespace(ExtractSettings, ns).max_images == 8
    ns = finetune_lora.build_parser().parse_args([*LORA, "--objective", "linear", "--train-precision", "bf16",
                                                  "--train-seed", "3", "--max-train-images", "40"])
    settings = from_namespace(LoraSettings, ns)
    assert (settings.objective, settings.train_precision, settings.train_seed) == ("linear", "bf16", 3)
    assert settings.max_train_images == 40  # training images only: kept its name
    ns = detect.build_parser().parse_args([*DETECT, "--frames-per-video", "4"])
    assert from_namespace(DetectSettings, ns).frames_per_video == 4


def test_the_lora_checkpoint_keeps_the_keys_it_had_before_the_renames() -> None:
    """A checkpoint written before --head, --amp and --seed were renamed records them as head, amp and seed: the
    same run asked for with the new names must have that identity, or it would no longer resume."""
    identity = checkpoint_identity(LoraSettings(base_cache="b", out="o", objective="linear", train_precision="fp32",
                                                train_seed=3))
    assert (identity["head"], identity["amp"], identity["seed"]) == ("linear", "fp32", 3)
    assert not {"objective", "train_precision", "train_seed"} & set(identity)
    assert {"out", "workers", "device", "overwrite"}.isdisjoint(identity)  # where the run goes never differs


def test_a_lora_record_made_before_the_renames_reads_as_it_meant(tmp_path: Path) -> None:
    """lora.json's settings of an older run hold amp, seed and head: read as the new fields, not as their defaults
    (a run trained with --amp fp16 scored in fp16, which a CPU cannot redo: the caller is told fp16)."""
    old = {"base_cache": "c.h5", "out": "r", "amp": "fp16", "seed": 3, "head": "linear", "rank": 4}
    run = Run(tmp_path, "lora", RUN_KINDS.get("lora"), {"settings": old})
    settings = run_settings(run)
    assert (settings.train_precision, settings.train_seed, settings.objective) == ("fp16", 3, "linear")
    assert settings.rank == 4
    assert tower_precision(run, torch.device("cpu")) == "fp16"
    new = Run(tmp_path, "lora", RUN_KINDS.get("lora"), {"settings": {**old, "train_seed": 5}})
    assert run_settings(new).train_seed == 5  # the new key wins where a record has both


def test_a_cache_made_before_the_rename_keeps_its_image_limit() -> None:
    """The LoRA stage re-scans the base cache's data root with the cache's own --max-images (older caches recorded
    it as limit), or the manifest would differ and the data root be refused."""
    base = Base(cache=None, made_with={"manifest": {}, "model": {}, "extract": {"out": "c.h5", "limit": 7}})
    assert base.extract_settings().max_images == 7


def test_help_lists_the_methods_registered() -> None:
    """--method's help names the methods from their modules without importing them: the same names METHODS has."""
    assert method_names() == tuple(sorted(METHODS))
    text = finetune_lora.build_parser().format_help()
    assert f"fine-tuning method: {', '.join(sorted(METHODS))}" in " ".join(text.split())


@pytest.mark.parametrize("argv, line", [
    (["--calibrate", "plat"], "error: --calibrate: unknown calibration 'plat'; choose from none, platt, isotonic; "
                              "did you mean 'platt'?"),
])
def test_detect_names_are_checked_before_the_run_is_opened(argv, line, tmp_path, capsys) -> None:
    assert detect.main(["--run", str(tmp_path / "no-run"), str(tmp_path / "no-input.png"), *argv]) == 2
    assert capsys.readouterr().err.strip() == line
