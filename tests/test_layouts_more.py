"""The field's newer benchmarks, each a hand-made tree in the shape of the real one: DFD (with its masks used for
the crops), Celeb-DF++ (Celeb-DF v3) and DF40."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipforensics.core.errors import UserError
from clipforensics.data.layouts import resolve, resolve_videos, scan, video_files
from clipforensics.data.layouts.masked import MaskedVideoFile
from clipforensics.data.manifest import OFFICIAL_SPLIT
from clipforensics.frames.crops import on_mask
from clipforensics.frames.detectors import Face
from conftest import manifest_settings as settings, touch

DFD_REAL, DFD_FAKE = "01__exit_phone_room", "01_02__exit_phone_room__YVGY8LOK"


def _videos(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates("video").set_index("video")


def test_dfd_tree_pairs_every_fake_with_its_mask_and_refuses_a_fake_without_one(tmp_path: Path) -> None:
    touch(tmp_path, f"original_sequences/actors/c23/videos/{DFD_REAL}.mp4",
          f"manipulated_sequences/DeepFakeDetection/c23/videos/{DFD_FAKE}.mp4",
          f"manipulated_sequences/DeepFakeDetection/masks/videos/{DFD_FAKE}.mp4")
    layout, by_class = video_files(tmp_path, "auto", "c23")
    assert layout.name == "dfd"
    assert [job.video for job in by_class["DFD-real"]] == [DFD_REAL]
    fake, = by_class["DeepFakeDetection"]
    assert isinstance(fake, MaskedVideoFile)
    assert fake.mask == tmp_path / f"manipulated_sequences/DeepFakeDetection/masks/videos/{DFD_FAKE}.mp4"
    (fake.mask).unlink()
    with pytest.raises(UserError, match="have no mask"):
        video_files(tmp_path, "auto", "c23")
    touch(tmp_path, "manipulated_sequences/FaceSwap/c23/videos/000_003.mp4")
    assert resolve_videos(tmp_path, "auto").name == "ffpp"  # a whole FF++ tree stays ffpp


def test_dfd_frames_are_labelled_and_grouped_with_the_scene_they_were_made_from(tmp_path: Path) -> None:
    touch(tmp_path, f"DFD-real/{DFD_REAL}/000.png", f"DeepFakeDetection/{DFD_FAKE}/000.png",
          f"DeepFakeDetection/{DFD_FAKE}/010.png")
    assert resolve(tmp_path, "auto").name == "dfd"
    table = _videos(scan(settings(tmp_path)))
    assert table[["label", "target"]].to_dict("index") == {
        f"DeepFakeDetection/{DFD_FAKE}": {"label": 1, "target": DFD_REAL},
        f"DFD-real/{DFD_REAL}": {"label": 0, "target": DFD_REAL}}


def test_a_mask_keeps_only_the_manipulated_face() -> None:
    mask = np.zeros((60, 100, 3), np.uint8)
    mask[10:40, 60:90] = 255
    left, right = Face((5.0, 5.0, 35.0, 40.0), 9.0), Face((58.0, 8.0, 92.0, 42.0), 1.0)
    assert on_mask([left, right], mask) == [right]
    assert on_mask([left], mask) == [Face((60.0, 10.0, 90.0, 40.0), 0.0)]  # the mask's own box
    assert on_mask([left, right], np.zeros_like(mask)) == []


def test_prepare_frames_crops_the_masked_face_of_a_dfd_fake(tmp_path, monkeypatch) -> None:
    """Two faces in every frame; the detector ranks the untouched one first, the mask marks the other."""
    import prepare_frames
    from test_frames import register, write_video

    class TwoFaces:
        def __call__(self, image: np.ndarray) -> list[Face]:
            return [Face((0.0, 0.0, 32.0, 32.0), 9.0), Face((64.0, 0.0, 96.0, 32.0), 1.0)]

    register(monkeypatch, "two", TwoFaces)
    frames = [np.concatenate([np.full((32, 64, 3), 40, np.uint8), np.full((32, 64, 3), 200, np.uint8)], axis=1)] * 3
    mask = np.zeros((32, 128, 3), np.uint8)
    mask[2:30, 66:94] = 255
    root = tmp_path / "ffpp"
    write_video(root / f"original_sequences/actors/c23/videos/{DFD_REAL}.avi", frames)
    write_video(root / f"manipulated_sequences/DeepFakeDetection/c23/videos/{DFD_FAKE}.avi", frames)
    write_video(root / f"manipulated_sequences/DeepFakeDetection/masks/videos/{DFD_FAKE}.avi", [mask] * 3)
    out = tmp_path / "frames"
    assert prepare_frames.main(["--videos-root", str(root), "--out", str(out), "--frames-per-video", "2", "--detector", "two",
                                "--align", "none", "--size", "16", "--workers", "0"]) == 0
    faces = pd.read_csv(out / "faces.csv").set_index("class")
    assert (faces.loc["DeepFakeDetection", "face_x0"] == 64.0).all()  # the masked face, not the first-ranked one
    assert (faces.loc["DFD-real", "face_x0"] == 0.0).all()
    assert set(scan(settings(out))["manipulation"]) == {"DFD-real", "DeepFakeDetection"}


PP_LIST = ("1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/FaceSwap/BlendFace/id0_id1_0000.mp4\n"
           "0 Celeb-synthesis/TalkingFace/SadTalker/id0_id1_0000.mp4\n")


def test_celebdfpp_download_tree_and_the_frames_prepared_from_it(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    touch(videos, "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0000.mp4", "YouTube-real/00001.mp4",
          "Celeb-synthesis/FaceSwap/BlendFace/id0_id1_0000.mp4", "Celeb-synthesis/FaceSwap/Celeb-DF-v2/id0_id1_0000.mp4",
          "Celeb-synthesis/TalkingFace/SadTalker/id0_id1_0000.mp4")
    (videos / "List_of_testing_videos.txt").write_text(PP_LIST)
    layout, by_class = video_files(videos, "auto", "c23")
    assert layout.name == "celebdfpp"
    assert {cls: [job.video for job in jobs] for cls, jobs in by_class.items()} == {
        "BlendFace": ["id0_id1_0000"], "Celeb-DF-v2": ["id0_id1_0000"], "Celeb-real": ["id0_0000", "id1_0000"],
        "SadTalker": ["id0_id1_0000"], "YouTube-real": ["00001"]}
    frames = tmp_path / "frames"  # as prepare_frames writes it: one folder per method, the list copied
    touch(frames, "Celeb-real/id0_0000/000.png", "Celeb-real/id1_0000/000.png", "BlendFace/id0_id1_0000/000.png",
          "SadTalker/id0_id1_0000/000.png", "SadTalker/id0_id1_0000/009.png")
    (frames / "List_of_testing_videos.txt").write_text(PP_LIST)
    assert resolve(frames, "auto").name == "celebdfpp"
    table = _videos(scan(settings(frames)))
    assert table[["label", "target", OFFICIAL_SPLIT]].to_dict("index") == {
        "BlendFace/id0_id1_0000": {"label": 1, "target": "id0_0000", OFFICIAL_SPLIT: "test"},
        "Celeb-real/id0_0000": {"label": 0, "target": "id0_0000", OFFICIAL_SPLIT: "test"},
        "Celeb-real/id1_0000": {"label": 0, "target": "id1_0000", OFFICIAL_SPLIT: ""},
        "SadTalker/id0_id1_0000": {"label": 1, "target": "id0_0000", OFFICIAL_SPLIT: "test"}}
    (frames / "List_of_testing_videos.txt").write_text("1 Celeb-synthesis/FaceSwap/BlendFace/id0_id1_0000.mp4\n")
    with pytest.raises(UserError, match="contradicts the folder"):
        scan(settings(frames, layout="celebdfpp"))


def test_df40_fakes_by_method_and_domain_beside_the_real_frames(tmp_path: Path) -> None:
    touch(tmp_path, "DF40/simswap/ff/frames/000_003/000.png", "DF40/simswap/cdf/frames/id0_id1_0000/000.png",
          "DF40/e4e/ff/inversions/000.png", "DF40/e4e/ff/inversions/001.png",
          "FaceForensics++/original_sequences/youtube/c23/frames/000/000.png",
          "Celeb-DF-v2/Celeb-real/frames/id0_0000/000.png")
    assert resolve(tmp_path, "auto").name == "df40"
    table = _videos(scan(settings(tmp_path)))
    assert table[["label", "manipulation", "target"]].to_dict("index") == {
        "CDF-real/id0_0000": {"label": 0, "manipulation": "CDF-real", "target": "id0_0000"},
        "FF-real/000": {"label": 0, "manipulation": "FF-real", "target": "000"},
        "e4e_ff/000": {"label": 1, "manipulation": "e4e_ff", "target": ""},
        "e4e_ff/001": {"label": 1, "manipulation": "e4e_ff", "target": ""},
        "simswap_cdf/id0_id1_0000": {"label": 1, "manipulation": "simswap_cdf", "target": "id0_0000"},
        "simswap_ff/000_003": {"label": 1, "manipulation": "simswap_ff", "target": "000"}}
