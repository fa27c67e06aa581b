"""The one identity-and-claim mechanism: every differing field named with both values, one message form."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from clipforensics.core.errors import UserError
from clipforensics.core.identity import check, claim, declare, differences, refusal
from clipforensics.core.settings import option

OLD = {"protocol": {"train_fakes": ["FaceSwap"], "real_split": "70/10/20", "split_seed": 0, "frames": None},
       "splits": "1a2b", "layer": "0", "cache": "a.h5", "seed": 1, "heads": ["logreg"]}
NEW = {"protocol": {"train_fakes": ["Deepfakes"], "real_split": "60/20/20", "split_seed": 3, "frames": 2},
       "splits": "9f8e", "cache": "b.h5", "seed": 1, "heads": ["logreg"], "extra": True}


def test_differences_name_every_field_with_both_values_dotted_and_uncapped():
    expected = ["cache: 'a.h5' != 'b.h5'", "extra: None != True", "layer: '0' != None",
                "protocol.frames: None != 2", "protocol.real_split: '70/10/20' != '60/20/20'",
                "protocol.split_seed: 0 != 3", "protocol.train_fakes: ['FaceSwap'] != ['Deepfakes']",
                "splits: '1a2b' != '9f8e'"]
    assert differences(OLD, NEW) == expected
    message = str(refusal("runs/a/run.json", expected))
    assert message == ("runs/a/run.json was made with other settings (found != expected); differs in "
                       + "; ".join(expected) + "; rerun with --overwrite to replace it")


def test_differences_compare_recorded_json_with_new_values_and_respect_keys():
    assert differences({"a": [1, 2], "b": {"x": 1}}, {"a": (1, 2), "b": {"x": 1}}) == []
    assert differences(OLD, NEW, keys=["splits", "seed"]) == ["splits: '1a2b' != '9f8e'"]


def test_long_values_are_shortened_around_their_difference_so_they_never_print_alike():
    old, new = "0" * 60 + "a" + "0" * 3, "0" * 60 + "b" + "0" * 3
    (line,) = differences({"digest": old}, {"digest": new})
    shown_old, shown_new = line[len("digest: "):].split(" != ")
    assert shown_old != shown_new and len(shown_old) < len(repr(old)) and "…" in shown_old
    assert "a" in shown_old and "b" in shown_new
    videos = list(range(100))
    (line,) = differences({"videos": videos}, {"videos": videos[:50] + [999] + videos[51:]})
    assert "999" in line and len(line) < 200


@dataclass
class Stage:
    out: str = option("o", "output", execution_only=True)
    size: int = option(8, "size", identity=True)
    levels: tuple[str, ...] = option((), "levels", identity="copies")
    seed: int = option(0, "seed of the copies", identity=True, identity_if="levels")
    other: int = option(0, "not identity")


def test_declare_reads_the_field_metadata_and_resolved_forms():
    assert declare(Stage(), inputs={"hash": "h"}) == {"hash": "h", "size": 8, "copies": []}
    declared = declare(Stage(levels=("jpeg:90,70",), seed=3), resolved={"levels": ["jpeg:90", "jpeg:70"]})
    assert declared == {"size": 8, "copies": ["jpeg:90", "jpeg:70"], "seed": 3}
    assert declared.flags == {"size": "--size", "seed": "--seed"}
    with pytest.raises(ValueError, match="other"):
        declare(Stage(), resolved={"other": 1})
    with pytest.raises(TypeError, match="identity settings only"):
        option(0, "x", identity_if="levels")


def test_a_refusal_says_which_options_given_as_typed_would_reuse_the_output():
    new = declare(Stage(size=4, levels=("blur:1",), seed=3))
    with pytest.raises(UserError) as refused:
        check({"size": 8, "copies": ["blur:1"], "seed": 0}, new, "cache c.h5")
    assert str(refused.value) == ("cache c.h5 was made with other settings (found != expected); differs in "
                                  "seed: 0 != 3; size: 8 != 4; to reuse it pass --seed 0, not 3 and --size 8, not 4; "
                                  "rerun with --overwrite to replace it")


def test_claim_reuses_refuses_or_replaces_only_under_overwrite():
    replaced = []
    assert claim(OLD, dict(OLD), "x", overwrite=False, replace=lambda: replaced.append(1)) is True
    with pytest.raises(UserError, match="protocol.split_seed: 0 != 3"):
        claim(OLD, NEW, "x", overwrite=False, replace=lambda: replaced.append(1))
    assert replaced == []
    assert claim(OLD, NEW, "x", overwrite=True, replace=lambda: replaced.append(1)) is False
    assert replaced == [1]
