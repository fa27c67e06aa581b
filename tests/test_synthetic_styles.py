"""Generated stand-ins for DFD, DF40 and Celeb-DF++: each written in its data set's layout and read back by it."""

from __future__ import annotations

import pytest

from clipforensics.data.layouts import resolve, scan
from clipforensics.data.manifest import OFFICIAL_SPLIT
from clipforensics.synthetic.write import generate
from conftest import manifest_settings as settings


@pytest.mark.parametrize("style, fakes", [("dfd", {"DeepFakeDetection"}),
                                          ("df40", {"deepfakes_ff", "face2face_ff", "faceswap_ff", "neuraltextures_ff"}),
                                          ("celebdfpp", {"FaceSwap"})])
def test_each_style_is_read_back_by_its_layout(tmp_path, style: str, fakes: set[str]) -> None:
    root = generate(tmp_path / style, videos=8, frames=2, size=48, seed=1, style=style)
    assert resolve(root, "auto").name == style
    manifest = scan(settings(root))
    assert set(manifest.loc[manifest["label"] == 1, "manipulation"]) == fakes
    videos = manifest.drop_duplicates("video")
    real_targets = set(videos.loc[videos["label"] == 0, "target"])
    assert set(videos.loc[videos["label"] == 1, "target"]) <= real_targets  # every fake groups with its real video
    assert (manifest.groupby("video").size() == 2).all()


def test_celebdfpp_style_lists_its_nested_fakes_as_official_tests(tmp_path) -> None:
    root = generate(tmp_path / "pp", videos=12, frames=1, size=48, seed=2, style="celebdfpp")
    listed = (root / "List_of_testing_videos.txt").read_text().splitlines()
    assert any(line.startswith("0 Celeb-synthesis/FaceSwap/FaceSwap/") for line in listed)
    videos = scan(settings(root)).drop_duplicates("video")
    assert (videos[OFFICIAL_SPLIT] == "test").sum() == len(listed)
