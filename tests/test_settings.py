"""Settings mechanics: shared option groups, identity / execution-only metadata, required options, registries."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

import extract_features
from clipforensics.core.commands import parse_command
from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.core.settings import (DeviceSettings, RuntimeSettings, add_arguments, execution_only_fields,
                                         from_dict, from_namespace, identity_values, option, to_dict,
                                         without_execution_only)
from clipforensics.data.manifest import DataSettings, ManifestSettings
from clipforensics.detect.settings import DetectSettings
from clipforensics.evaluate.settings import EvaluateSettings
from clipforensics.extract.settings import ExtractSettings
from clipforensics.extract.prompts import PROMPT_SETS
from clipforensics.frames.detectors import DETECTORS, make_detector
from clipforensics.frames.settings import FrameSettings
from clipforensics.heads.settings import FitSettings
from clipforensics.heads.heads import HEADS
from clipforensics.lora.settings import LoraSettings


@dataclass
class Toy(RuntimeSettings):
    out: str = option(None, "output", required=True, execution_only=True)
    size: int = option(8, "size", identity=True)
    seed: int = option(0, "seed")


def test_a_field_is_identity_or_execution_only_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        option(1, "x", identity=True, execution_only=True)


def test_metadata_helpers_read_the_fields() -> None:
    toy = Toy(out="o", size=3, precision="fp32")
    assert identity_values(toy) == {"size": 3}
    assert set(execution_only_fields(Toy)) == {"device", "workers", "out"}
    assert without_execution_only(toy) == {"precision": "fp32", "size": 3, "seed": 0}


def test_lora_checkpoint_identity_leaves_out_exactly_the_execution_settings() -> None:
    names = set(dataclasses.asdict(LoraSettings(base_cache="b", out="o")))
    kept = set(without_execution_only(LoraSettings(base_cache="b", out="o")))
    assert names - kept == {"out", "data_root", "workers", "device", "cache_out", "merge_out", "extract", "overwrite"}
    assert {"rank", "lr", "train_seed", "base_cache", "train_precision"} <= kept


def test_frame_identity_is_what_changes_the_pixels_or_the_videos() -> None:
    settings = FrameSettings(videos_root="v", out="o", workers=4, max_videos=2)
    assert set(identity_values(settings)) == {"frames", "size", "margin", "detector", "detect_max_side",
                                              "compression", "layout", "align", "landmarks"}


def test_shared_groups_are_declared_once() -> None:
    for stage, group in ((ExtractSettings, RuntimeSettings), (LoraSettings, DeviceSettings),
                         (DetectSettings, DeviceSettings),
                         (ManifestSettings, DataSettings), (EvaluateSettings, DataSettings)):
        assert issubclass(stage, group)
        stage_fields = {f.name: f for f in dataclasses.fields(stage)}
        for f in dataclasses.fields(group):
            assert stage_fields[f.name].metadata is f.metadata, (stage, f.name)


def test_group_options_go_under_the_group_title() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ManifestSettings, "data")
    add_arguments(parser, ExtractSettings, "extraction")
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups}
    assert groups["runtime"] == {"device", "workers", "precision"}
    assert groups["data"] == {"data_root", "real_classes", "video_pattern", "classes", "layout", "labels"}
    assert {"out", "batch_size", "shard"} <= groups["extraction"]
    ns = parser.parse_args(["--data-root", "d", "--out", "o", "--workers", "0", "--precision", "fp32"])
    settings = from_namespace(ExtractSettings, ns)
    assert (settings.workers, settings.precision, settings.device) == (0, "fp32", "auto")
    assert from_dict(ExtractSettings, to_dict(settings)) == settings


def test_required_is_decided_by_the_settings() -> None:
    with pytest.raises(UserError, match="data root"):
        ManifestSettings()
    with pytest.raises(UserError, match="--out"):
        FitSettings(cache="c")
    assert EvaluateSettings(out="o").data_root is None  # the evaluator takes it from the scores


def test_extract_merge_is_a_sub_command() -> None:
    def command(argv: list[str]) -> str:
        return parse_command(extract_features.COMMANDS, "extract", argv)[1].command

    assert command(["merge", "--out", "o"]) == "merge"
    assert command(["--out", "o"]) == command(["extract", "--out", "o"]) == "extract"
    with pytest.raises(SystemExit):
        command(["--out", "o", "merge"])
    assert extract_features.main(["--out", "o"]) == 2  # no data root: one line, exit 2


def test_registry_lookup_and_errors() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def b() -> int:
        return 2

    assert reg.get("a") == 1 and reg.get("b") is b and reg.names() == ["a", "b"] and "a" in reg
    with pytest.raises(UserError, match=r"unknown widget 'c'; choose from a, b"):
        reg.get("c")
    assert reg.get("c", None) is None
    with pytest.raises(ValueError, match="twice"):
        reg.register("a", 3)


def test_registry_entries_can_be_swapped_for_a_test(monkeypatch) -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with monkeypatch.context() as patch:
        patch.setitem(reg, "a", 2)
        patch.setitem(reg, "b", 3)
        assert (reg.get("a"), reg.get("b")) == (2, 3)
    assert reg.items() == [("a", 1)]


def test_every_named_choice_is_a_registry() -> None:
    for registry in (HEADS, PROMPT_SETS, DETECTORS):
        assert isinstance(registry, Registry) and len(registry)
    assert make_detector("haar") is not None
    with pytest.raises(UserError, match="unknown prompt set 'v9'; choose from v1, v2, bank"):
        PROMPT_SETS.get("v9")
