"""Mistakes a user makes get a way out in the same line: the closest known name, the data root to pass instead."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry, SuggestingParser, close_names, unknown_name
from clipforensics.data.layouts import resolve, scan
from clipforensics.heads.heads import HEADS
from conftest import manifest_settings as settings, touch


def test_unknown_registry_name_says_the_closest_in_one_line() -> None:
    with pytest.raises(UserError) as caught:
        HEADS.get("logrg")
    message = str(caught.value)
    assert message.startswith("unknown head 'logrg'; choose from logreg, ")
    assert message.endswith("; did you mean 'logreg'?") and "\n" not in message


def test_suggestions_are_difflibs_closest_and_none_when_nothing_is_close() -> None:
    known = ["logreg", "svm", "ridge", "prompt-features", "real-only"]
    for typo in ("logrg", "rigde", "prompt", "real", "svn", "xyz"):
        assert close_names(typo, known) == difflib.get_close_matches(typo, known, n=3, cutoff=0.6)
    assert close_names("LogReg", known) == ["logreg"]  # a case slip
    assert unknown_name("widget", "c", ["a", "b"]) == "unknown widget 'c'; choose from a, b"
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    with pytest.raises(UserError, match=r"^unknown widget 'alpah'; choose from alpha, beta; did you mean 'alpha'\?$"):
        reg.get("alpah")


def test_unknown_layout_says_the_closest(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown layout 'celeb'; choose from .*; did you mean 'celebdf' or "):
        resolve(tmp_path, "celeb")


def test_an_invalid_argparse_choice_says_the_closest(capsys) -> None:
    parser = SuggestingParser(prog="x")
    parser.add_argument("--video-agg", choices=("mean", "median", "max"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--video-agg", "meen"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("x: error: argument --video-agg: invalid choice: 'meen' (choose from ")
    assert err.endswith("; did you mean 'mean' or 'median'?")
    assert parser.parse_args(["--video-agg", "max"]).video_agg == "max"


def test_the_folder_above_a_data_root_names_the_root_to_pass(tmp_path: Path) -> None:
    touch(tmp_path, "data/synthetic/Real_youtube/v1/000.png", "data/synthetic/FaceSwap/v2/000.png", "data/notes/x.txt")
    with pytest.raises(UserError) as caught:
        scan(settings(tmp_path / "data"))
    message = str(caught.value)
    assert message.startswith(f"no real class folder (Real_youtube) in {tmp_path / 'data'}")
    assert message.endswith(f"pass --data-root {tmp_path / 'data' / 'synthetic'}") and "\n" not in message
    assert len(scan(settings(tmp_path / "data" / "synthetic"))) == 2


@pytest.mark.parametrize("videos, shown, sorted_hint", [
    (("Real_youtube/a.mp4", "FaceSwap/b.mp4"), "FaceSwap/b.mp4", False),  # class folders of videos
    (("a.mp4", "b.avi"), "a.mp4", True),  # a plain folder of videos
    (("original_sequences/youtube/c23/videos/000.mp4",), "original_sequences/youtube/c23/videos/000.mp4", False),
])
def test_a_folder_of_videos_is_sent_to_prepare_frames(tmp_path: Path, videos: tuple[str, ...], shown: str,
                                                      sorted_hint: bool) -> None:
    touch(tmp_path, *videos)
    with pytest.raises(UserError) as caught:
        scan(settings(tmp_path))
    message = str(caught.value)
    assert f"{tmp_path} holds videos ({shown}), not frames: run python prepare_frames.py --videos-root {tmp_path}" \
        in message and message.endswith("then pass --data-root FRAMES")
    assert ("one folder per class" in message) == sorted_hint


def test_other_unreadable_roots_get_no_hint(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/v1/000.png", "FaceSwap/notes.txt", "FaceSwap/b.mp4")
    with pytest.raises(UserError) as caught:
        scan(settings(tmp_path))
    assert str(caught.value) == f"class folder FaceSwap in {tmp_path} has no images (bmp/jpeg/jpg/png/webp)"


def _error_line(parser: SuggestingParser, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(argv)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_an_unknown_option_is_named_with_the_closest_before_a_missing_required_one(capsys) -> None:
    parser = SuggestingParser(prog="x")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--test-cache")
    assert _error_line(parser, ["--cahce", "a.h5"], capsys) == \
        "x: error: unknown option --cahce; did you mean '--cache' or '--test-cache'?"
    assert _error_line(parser, ["--cache=a.h5", "--zzz"], capsys) == "x: error: unknown option --zzz"
    assert parser.parse_args(["--cache", "a.h5"]).cache == "a.h5"


def test_options_are_never_abbreviated(capsys) -> None:
    """A prefix standing for an option would let `--layer` mean `--layer-sweep` in one script and not another."""
    parser = SuggestingParser(prog="x")
    parser.add_argument("--layer-sweep", action="store_true")
    assert _error_line(parser, ["--layer"], capsys) == "x: error: unknown option --layer; did you mean '--layer-sweep'?"
    assert parser.parse_args(["--layer-sweep"]).layer_sweep


def test_a_renamed_option_answers_with_its_new_name(capsys) -> None:
    from dataclasses import dataclass

    from clipforensics.core.settings import add_arguments, option

    @dataclass
    class Stage:
        train_seed: int = option(0, "training seed", formerly="--seed", identity="seed")

    parser = SuggestingParser(prog="x")
    add_arguments(parser, Stage, "stage")
    assert _error_line(parser, ["--seed", "3"], capsys) == "x: error: --seed is now --train-seed"
    assert _error_line(parser, ["--seed=3"], capsys) == "x: error: --seed is now --train-seed"
    assert parser.parse_args(["--train-seed", "3"]).train_seed == 3
