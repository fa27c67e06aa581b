"""Scanning data roots: both layouts, video ids, FF++ ids, errors, hashing and frame sampling."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipforensics.core.errors import UserError
from clipforensics.core.sampling import sample_frames
from clipforensics.data.manifest import (COLUMNS, ManifestSettings, manifest_hash, scan, video_of,
                                    video_table)
from clipforensics.core.settings import add_arguments, from_namespace
from conftest import manifest_settings as settings, touch

@pytest.fixture
def nested(tmp_path: Path) -> Path:
    touch(tmp_path, "Real_youtube/820/000.png", "Real_youtube/820/001.png", "Real_youtube/003/000.png",
          "FaceSwap/000_003/012.png", "FaceSwap/000_003/013.png", "NeuralTextures/820_003/000.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "Real_youtube/820/002.png")
    return tmp_path


def test_nested_layout(nested: Path) -> None:
    df = scan(settings(nested))
    assert tuple(df.columns) == COLUMNS
    assert df["path"].tolist() == sorted(df["path"])
    row = df.set_index("path").loc["FaceSwap/000_003/012.png"]
    assert (row["label"], row["manipulation"], row["video"], row["target"], row["source"]) == (
        1, "FaceSwap", "FaceSwap/000_003", "000", "003")
    real = df.set_index("path").loc["Real_youtube/820/002.png"]
    assert (real["label"], real["manipulation"], real["video"], real["target"], real["source"]) == (
        0, "Real_youtube", "Real_youtube/820", "820", "")
    assert df["label"].dtype in (np.int8, np.int64)


def test_flat_layout(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/286_082.png", "Real_youtube/286_083.png", "FaceSwap/000_003_012.png")
    df = scan(settings(tmp_path)).set_index("path")
    assert df.loc["Real_youtube/286_082.png", "video"] == "Real_youtube/286"
    assert df.loc["FaceSwap/000_003_012.png", ["video", "target", "source"]].tolist() == [
        "FaceSwap/000_003", "000", "003"]


def test_deeper_nesting_uses_first_subfolder(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/820/crops/a/000.png", "FaceSwap/000_003/x/012.png")
    df = scan(settings(tmp_path))
    assert set(df["video"]) == {"Real_youtube/820", "FaceSwap/000_003"}


def test_non_ffpp_fake_names_have_no_target(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/820/000.png", "MyGAN/clip_a/000.png")
    fake = scan(settings(tmp_path)).query("label == 1").iloc[0]
    assert (fake["video"], fake["target"], fake["source"]) == ("MyGAN/clip_a", "", "")


def test_video_pattern_overrides_layout(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/cam1-820-f000.png", "FaceSwap/cam1-000_003-f012.png")
    df = scan(settings(tmp_path, video_pattern=r"-(?P<video>[^-]+)-f\d+"))
    assert set(df["video"]) == {"Real_youtube/820", "FaceSwap/000_003"}
    df1 = scan(settings(tmp_path, video_pattern=r"^cam1-(\w+)-"))
    assert set(df1["video"]) == {"Real_youtube/820", "FaceSwap/000_003"}


@pytest.mark.parametrize("pattern", ["(unclosed", r"\d+"])
def test_bad_video_pattern(nested: Path, pattern: str) -> None:
    with pytest.raises(UserError, match="video_pattern"):
        scan(settings(nested, video_pattern=pattern))


def test_video_pattern_that_misses_names_the_file(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/v820_000.png", "Real_youtube/other.png")
    with pytest.raises(UserError, match="Real_youtube/other.png"):
        scan(settings(tmp_path, video_pattern=r"v(?P<video>\d+)_"))


def test_extensions_case_insensitive_hidden_and_non_images_ignored(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/1/a.PNG", "Real_youtube/1/b.Jpg", "Real_youtube/1/c.jpeg", "Real_youtube/1/d.WEBP",
          "Real_youtube/1/e.bmp", "Real_youtube/1/notes.txt", "Real_youtube/1/.f.png", "Real_youtube/.cache/1/a.png",
          "Real_youtube/1/.thumbs/a.png", ".hidden_class/1/a.png", "FaceSwap/1_2/a.png")
    df = scan(settings(tmp_path))
    assert df["path"].tolist() == ["FaceSwap/1_2/a.png", "Real_youtube/1/a.PNG", "Real_youtube/1/b.Jpg",
                                   "Real_youtube/1/c.jpeg", "Real_youtube/1/d.WEBP", "Real_youtube/1/e.bmp"]


def test_classes_filter_keeps_real(nested: Path) -> None:
    df = scan(settings(nested, classes=("FaceSwap",)))
    assert set(df["manipulation"]) == {"FaceSwap", "Real_youtube"}


def test_several_real_classes(nested: Path) -> None:
    touch(nested, "Real_actors/01/000.png")
    df = scan(settings(nested, real_classes=("Real_youtube", "Real_actors")))
    assert df.loc[df["manipulation"] == "Real_actors", "label"].tolist() == [0]


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda root: None, {"data_root": "missing"}, "does not exist"),
    (lambda root: touch(root, "file.png"), {"data_root": "file.png"}, "not a directory"),
    (lambda root: touch(root, "loose.png"), {}, "no class folders"),
    (lambda root: touch(root, "FaceSwap/0_1/a.png"), {}, "no real class folder.*found: FaceSwap"),
    (lambda root: touch(root, "Real_youtube/1/a.png", "FaceSwap/0_1/a.txt"), {}, "FaceSwap .*has no images"),
    (lambda root: touch(root, "Real_youtube/1/a.png"), {"classes": ("Deepfakes",)},
     "Deepfakes not in .*available: Real_youtube"),
])
def test_scan_errors(tmp_path: Path, make, kwargs: dict, message: str) -> None:
    make(tmp_path)
    if "data_root" in kwargs:
        kwargs = {**kwargs, "data_root": str(tmp_path / kwargs["data_root"])}
    with pytest.raises(UserError, match=message):
        scan(ManifestSettings(**{"data_root": str(tmp_path), **kwargs}))


def test_no_data_root() -> None:
    with pytest.raises(UserError, match="data root"):
        scan(ManifestSettings())


def test_settings_round_trip_through_argparse(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ManifestSettings, "data")
    ns = parser.parse_args(["--data-root", str(tmp_path), "--real-classes", "Real_youtube,Real_actors"])
    parsed = from_namespace(ManifestSettings, ns)
    assert parsed.real_classes == ("Real_youtube", "Real_actors") and parsed.classes == ()


@pytest.mark.parametrize("path, expected", [
    (r"C:\data\FaceSwap\000_003\012.png", ("FaceSwap", "FaceSwap/000_003")),
    (r"D:\x\Real_youtube\286_082.png", ("Real_youtube", "Real_youtube/286")),
    ("/abs/root/Real_youtube/820/000.png", ("Real_youtube", "Real_youtube/820")),
    ("FaceSwap/000_003_012.png", ("FaceSwap", "FaceSwap/000_003")),
    ("Deepfakes/000_003/sub/012.png", ("Deepfakes", "Deepfakes/000_003")),
    ("/x/Custom/clip7/001.jpg", ("Custom", "Custom/clip7")),
    ("./Custom/clip7/001.jpg", ("Custom", "Custom/clip7")),
])
def test_video_of(path: str, expected: tuple[str, str]) -> None:
    assert video_of(path) == expected


def test_video_of_custom_classes_and_pattern() -> None:
    assert video_of(r"E:\r\Real\5_1.png", class_names={"Real"}) == ("Real", "Real/5")
    assert video_of("/r/FaceSwap/a-000_003-1.png", video_pattern=r"-(?P<video>.+)-") == (
        "FaceSwap", "FaceSwap/000_003")


def test_video_of_agrees_with_scan(nested: Path) -> None:
    df = scan(settings(nested))
    names = set(df["manipulation"])
    assert [video_of(str(nested / p), class_names=names)[1] for p in df["path"]] == df["video"].tolist()


def test_video_of_too_short() -> None:
    with pytest.raises(UserError, match="cannot tell"):
        video_of("frame.png")


def test_manifest_hash_stable_and_sensitive(nested: Path) -> None:
    first = manifest_hash(scan(settings(nested)))
    assert first == manifest_hash(scan(settings(nested)))
    assert len(first) == 16
    touch(nested, "FaceSwap/000_003/014.png")
    assert manifest_hash(scan(settings(nested))) != first


def test_video_table(nested: Path) -> None:
    table = video_table(scan(settings(nested))).set_index("video")
    assert table.loc["Real_youtube/820", "n_frames"] == 3
    assert table.loc["FaceSwap/000_003", ["manipulation", "label", "target", "source"]].tolist() == [
        "FaceSwap", 1, "000", "003"]
    assert len(table) == 4


def frames(n: int, video: str = "R/1") -> pd.DataFrame:
    return pd.DataFrame({"path": [f"{video}/{i:03d}.png" for i in range(n)], "video": video})


def test_sample_frames_spreads_evenly() -> None:
    df = pd.concat([frames(101), frames(3, "R/2")], ignore_index=True).sample(frac=1, random_state=0)
    picked = sample_frames(df, 5)
    first = sorted(int(p[-7:-4]) for p in picked.loc[picked["video"] == "R/1", "path"])
    assert first == [0, 25, 50, 75, 100]
    assert (picked["video"] == "R/2").sum() == 3
    assert picked.index.isin(df.index).all()
    assert list(picked.index) == [i for i in df.index if i in set(picked.index)]


def test_sample_frames_none_and_invalid() -> None:
    df = frames(10)
    assert sample_frames(df, None) is df
    with pytest.raises(UserError):
        sample_frames(df, 0)
