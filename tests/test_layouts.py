"""Data set layouts: Celeb-DF v2, DFDC / DFDC-preview, a labelled CSV, detection, and what prepare_frames reads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clipforensics.core.errors import UserError
from clipforensics.data.layouts import (LAYOUTS, frame_reader, reader_names, resolve, resolve_videos, scan, video_files,
                                        video_reader)
from clipforensics.data.layouts.base import listing_with_splits, present
from clipforensics.data.layouts.listed import listed_layout
from clipforensics.data.manifest import COLUMNS, OFFICIAL_SPLIT, manifest_hash
from conftest import manifest_settings as settings, touch

CELEBDF_LIST = "1 Celeb-real/id0_0001.mp4\n0 Celeb-synthesis/id0_id16_0001.mp4\n1 YouTube-real/00170.mp4\n"


@pytest.fixture
def celebdf(tmp_path: Path) -> Path:
    """Celeb-DF v2 frames: nested folders, one DeepfakeBench-style <class>/frames/<video>/ folder."""
    touch(tmp_path, "Celeb-real/id0_0000/000.png", "Celeb-real/id0_0000/015.png", "Celeb-real/id0_0001/000.png",
          "Celeb-synthesis/id0_id16_0000/000.png", "Celeb-synthesis/frames/id0_id16_0001/000.png",
          "YouTube-real/00170/000.png", "YouTube-real/00171/000.png")
    (tmp_path / "List_of_testing_videos.txt").write_text(CELEBDF_LIST)
    return tmp_path


def test_celebdf_frames_labels_and_official_test_list(celebdf: Path) -> None:
    assert resolve(celebdf, "auto").name == "celebdf"
    df = scan(settings(celebdf)).set_index("path")
    assert tuple(df.columns) == tuple(c for c in COLUMNS if c != "path") + (OFFICIAL_SPLIT,)
    fake = df.loc["Celeb-synthesis/frames/id0_id16_0001/000.png"]
    assert (fake["label"], fake["manipulation"], fake["video"], fake["target"], fake[OFFICIAL_SPLIT]) == (
        1, "Celeb-synthesis", "Celeb-synthesis/id0_id16_0001", "id0_0001", "test")
    assert df.loc["YouTube-real/00171/000.png", ["label", OFFICIAL_SPLIT]].tolist() == [0, ""]
    tested = sorted(set(df.loc[df[OFFICIAL_SPLIT] == "test", "video"]))
    assert tested == ["Celeb-real/id0_0001", "Celeb-synthesis/id0_id16_0001", "YouTube-real/00170"]
    assert set(df.loc[df["manipulation"] != "Celeb-synthesis", "label"]) == {0}


def test_celebdf_list_that_contradicts_its_folder_is_refused(celebdf: Path) -> None:
    (celebdf / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0001.mp4\n1 Celeb-synthesis/id0_id16_0001.mp4\n")
    with pytest.raises(UserError, match=r"line 2: 1 Celeb-synthesis/id0_id16_0001.mp4 labels the video real .* "
                                        r"Celeb-synthesis/ holds fake videos"):
        scan(settings(celebdf))
    (celebdf / "List_of_testing_videos.txt").write_text("0 YouTube-real/00170.mp4\n")
    with pytest.raises(UserError, match="labels the video fake"):
        scan(settings(celebdf))


@pytest.mark.parametrize("text, message", [
    ("Celeb-real/id0_0001.mp4\n", "is not 'LABEL PATH'"),
    ("2 Celeb-real/id0_0001.mp4\n", "is not 'LABEL PATH'"),
    ("1 Other/id0_0001.mp4\n", "not in a Celeb-DF folder"),
    ("1 Celeb-real/id0_0001.mp4\n1 Celeb-real/id0_0001.mp4\n", "listed twice"),
])
def test_celebdf_malformed_list(celebdf: Path, text: str, message: str) -> None:
    (celebdf / "List_of_testing_videos.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        scan(settings(celebdf))


def test_celebdf_listed_videos_without_frames_are_named(celebdf: Path, capsys) -> None:
    (celebdf / "List_of_testing_videos.txt").write_text(CELEBDF_LIST + "0 Celeb-synthesis/id9_id1_0003.mp4\n")
    df = scan(settings(celebdf))
    assert "1 of 4 videos in List_of_testing_videos.txt are not under" in capsys.readouterr().err
    assert df[OFFICIAL_SPLIT].eq("test").sum() == 3


def test_celebdf_without_test_list_has_no_official_split(celebdf: Path) -> None:
    (celebdf / "List_of_testing_videos.txt").unlink()
    df = scan(settings(celebdf, layout="celebdf"))
    assert OFFICIAL_SPLIT not in df.columns and len(df) == 7


def test_official_split_is_part_of_the_manifest_hash(celebdf: Path) -> None:
    before = manifest_hash(scan(settings(celebdf)))
    (celebdf / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0001.mp4\n")
    assert manifest_hash(scan(settings(celebdf))) != before


def test_celebdf_videos_for_prepare_frames(tmp_path: Path) -> None:
    touch(tmp_path, "Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id16_0000.mp4", "YouTube-real/00000.mp4",
          "Celeb-real/notes.txt")
    layout, by_class = video_files(tmp_path, "auto", "c23")
    found = [video for videos in by_class.values() for video in videos]
    assert [(v.class_name, v.video) for v in found] == [
        ("Celeb-real", "id0_0000"), ("Celeb-synthesis", "id0_id16_0000"), ("YouTube-real", "00000")]


def test_dfdc_parts_and_preview(tmp_path: Path, capsys) -> None:
    touch(tmp_path, "dfdc_train_part_0/aaa/000.png", "dfdc_train_part_0/bbb/000.png", "dfdc_train_part_0/ccc/000.png",
          "method_A/1061888/1255229/1255229_A_001/000.png", "original_videos/1255229/1255229_001/000.png")
    (tmp_path / "dfdc_train_part_0/metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "REAL", "split": "train"},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"}}))
    (tmp_path / "dataset.json").write_text(json.dumps({
        "method_A/1061888/1255229/1255229_A_001.mp4": {"label": "fake", "set": "test"},
        "original_videos/1255229/1255229_001.mp4": {"label": "real", "set": "test"}}))
    assert resolve(tmp_path, "auto").name == "dfdc"
    df = scan(settings(tmp_path)).set_index("path")
    assert df.loc["dfdc_train_part_0/bbb/000.png", ["label", "video", "target", OFFICIAL_SPLIT]].tolist() == [
        1, "DFDC-fake/bbb", "aaa", "train"]
    assert df.loc["method_A/1061888/1255229/1255229_A_001/000.png", ["label", "manipulation", OFFICIAL_SPLIT]].tolist(
    ) == [1, "method_A", "test"]
    assert "dfdc_train_part_0/ccc/000.png" not in df.index  # not in any metadata: not labelled, not used
    assert "1 folders of frames under" in capsys.readouterr().err


def test_dfdc_bad_label_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "part/aaa/000.png")
    (tmp_path / "part/metadata.json").write_text(json.dumps({"aaa.mp4": {"label": "MAYBE"}}))
    with pytest.raises(UserError, match="'aaa.mp4' has no label REAL or FAKE"):
        scan(settings(tmp_path))


def test_csv_layout_frames_folders_groups_and_splits(tmp_path: Path) -> None:
    touch(tmp_path, "clips/a/000.png", "clips/a/001.png", "clips/b/000.png", "stills/x.png", "stills/y.png")
    (tmp_path / "labels.csv").write_text("path,label,group,split,manipulation\n"
                                         "clips/a,real,g1,test,\nclips/b,1,g1,test,GAN\n"
                                         "stills/x.png,fake,,train,GAN\nstills/y.png,0,,train,\n")
    assert resolve(tmp_path, "auto").name == "csv"
    df = scan(settings(tmp_path)).set_index("path")
    assert df.loc["clips/a/001.png", ["label", "video", "target", OFFICIAL_SPLIT]].tolist() == [0, "real/clips/a",
                                                                                                "g1", "test"]
    assert df.loc["clips/b/000.png", ["video", "target", "source"]].tolist() == ["GAN/clips/b", "g1", "g1"]
    assert df.loc["stills/x.png", ["label", "video", OFFICIAL_SPLIT]].tolist() == [1, "GAN/stills", "train"]


def test_csv_label_file_option_and_errors(tmp_path: Path) -> None:
    touch(tmp_path, "v/000.png")
    other = tmp_path / "elsewhere.csv"
    other.write_text("path,label\nv,real\n")
    assert scan(settings(tmp_path, layout="csv", labels=str(other)))["video"].tolist() == ["real/v"]
    other.write_text("path,label\nv,maybe\n")
    with pytest.raises(UserError, match="line 2: label 'maybe' is not 0/real or 1/fake"):
        scan(settings(tmp_path, layout="csv", labels=str(other)))
    other.write_text("file,label\nv,0\n")
    with pytest.raises(UserError, match="needs columns path and label"):
        scan(settings(tmp_path, layout="csv", labels=str(other)))


def test_unknown_layout_and_ffpp_fallback(tmp_path: Path) -> None:
    touch(tmp_path, "Real_youtube/000/000.png", "FaceSwap/000_003/000.png")
    assert resolve(tmp_path, "auto").name == "ffpp"
    assert len(scan(settings(tmp_path))) == 2
    with pytest.raises(UserError, match="unknown layout 'celeb'; choose from"):
        scan(settings(tmp_path, layout="celeb"))


def test_prepare_frames_writes_celebdf_and_dfdc_frames_read_back_with_their_labels(tmp_path, monkeypatch) -> None:
    """Videos in a data set's own layout -> prepare_frames -> a data root the same layout reads, same labels."""
    import prepare_frames
    from test_frames import CountingStub, grey_frames, register, write_video

    register(monkeypatch, "stub", CountingStub)
    videos = tmp_path / "videos"
    for rel in ("Celeb-real/id0_0000.avi", "Celeb-real/id1_0000.avi", "Celeb-synthesis/id0_id1_0000.avi",
                "YouTube-real/00003.avi"):
        write_video(videos / rel, grey_frames([40, 80, 120]))
    (videos / "List_of_testing_videos.txt").write_text("1 Celeb-real/id1_0000.avi\n0 Celeb-synthesis/id0_id1_0000.avi\n")
    out = tmp_path / "frames"
    assert prepare_frames.main(["--videos-root", str(videos), "--out", str(out), "--frames-per-video", "2", "--detector", "stub",
                                "--align", "none", "--size", "32", "--workers", "0"]) == 0
    assert (out / "List_of_testing_videos.txt").read_text() == (videos / "List_of_testing_videos.txt").read_text()
    df = scan(settings(out))
    videos_table = df.drop_duplicates("video").set_index("video")
    assert videos_table["label"].to_dict() == {"Celeb-real/id0_0000": 0, "Celeb-real/id1_0000": 0,
                                               "Celeb-synthesis/id0_id1_0000": 1, "YouTube-real/00003": 0}
    assert set(videos_table.index[videos_table[OFFICIAL_SPLIT] == "test"]) == {"Celeb-real/id1_0000",
                                                                                "Celeb-synthesis/id0_id1_0000"}
    assert len(df) == 8

    dfdc = tmp_path / "dfdc"
    for name in ("aaa", "bbb"):
        write_video(dfdc / "dfdc_train_part_0" / f"{name}.avi", grey_frames([60, 90]))
    (dfdc / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps({
        "aaa.avi": {"label": "REAL", "split": "train"}, "bbb.avi": {"label": "FAKE", "original": "aaa.avi"}}))
    assert prepare_frames.main(["--videos-root", str(dfdc), "--out", str(tmp_path / "dfdc-frames"), "--frames-per-video", "2",
                                "--detector", "stub", "--align", "none", "--size", "32", "--workers", "0"]) == 0
    df = scan(settings(tmp_path / "dfdc-frames")).drop_duplicates("video").set_index("video")
    assert df[["label", "target"]].to_dict("index") == {"DFDC-real/aaa": {"label": 0, "target": "aaa"},
                                                        "DFDC-fake/bbb": {"label": 1, "target": "aaa"}}


def test_prepare_frames_refuses_a_mislabelled_test_list(tmp_path, capsys) -> None:
    import prepare_frames
    touch(tmp_path / "videos", "Celeb-real/id0_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4")
    (tmp_path / "videos" / "List_of_testing_videos.txt").write_text("0 Celeb-real/id0_0000.mp4\n")
    assert prepare_frames.main(["--videos-root", str(tmp_path / "videos"), "--out", str(tmp_path / "out")]) == 2
    assert "labels the video fake (1 = real, 0 = fake) but Celeb-real/ holds real videos" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- one registration per data set


def toy_videos(root: Path, found, labels: Path | None) -> pd.DataFrame:
    """A made-up data set: toy.txt lines 'real PATH' / 'fake PATH', for the registration tests below."""
    rows = []
    for line in (labels or root / "toy.txt").read_text().splitlines():
        word, rel = line.split()
        rows.append({"listed": rel, "label": int(word == "fake"), "manipulation": rel.split("/", 1)[0],
                     "name": Path(rel).stem, "target": Path(rel).stem, "source": "", OFFICIAL_SPLIT: ""})
    return listing_with_splits(rows)


def register_toy(monkeypatch, priority: int) -> None:
    monkeypatch.setitem(LAYOUTS, "toy", listed_layout(
        "toy", priority, detect=lambda root: (root / "toy.txt").is_file(), videos=toy_videos,
        label_files=lambda root: present(root, "toy.txt")))


def test_detection_order_comes_from_the_registry() -> None:
    """The order the hand-kept tuples gave: frames csv, celebdf, dfdc, then ffpp; videos ffpp first, folders last."""
    assert reader_names(frame_reader) == ["dfd", "csv", "celebdfpp", "celebdf", "df40", "dfdc", "ffpp"]
    assert reader_names(video_reader) == ["dfd", "ffpp", "csv", "celebdfpp", "celebdf", "dfdc", "folders"]


def test_each_root_kind_has_its_own_markers_and_fallback(tmp_path: Path) -> None:
    touch(tmp_path, "original_sequences/youtube/c23/videos/000.mp4", "labels.csv")
    assert resolve_videos(tmp_path, "auto").name == "ffpp"  # the FF++ tree's marker comes first for videos
    assert resolve(tmp_path, "auto").name == "csv"  # for frames, ffpp is only the fallback
    (tmp_path / "labels.csv").unlink()
    assert resolve(tmp_path, "auto").name == "ffpp"
    assert resolve_videos(tmp_path / "original_sequences", "auto").name == "folders"
    with pytest.raises(UserError, match="layout 'folders' has no reader of frames; for a root of frames choose "
                                        "from dfd, csv, celebdfpp, celebdf, df40, dfdc, ffpp"):
        scan(settings(tmp_path, layout="folders"))


def test_a_priority_decides_between_two_markers(tmp_path: Path, monkeypatch) -> None:
    touch(tmp_path, "clips/a/000.png", "labels.csv", "toy.txt")
    register_toy(monkeypatch, priority=15)
    assert resolve(tmp_path, "auto").name == "csv"  # csv's priority is 10
    register_toy(monkeypatch, priority=5)
    assert resolve(tmp_path, "auto").name == resolve_videos(tmp_path, "auto").name == "toy"


def test_a_new_data_set_is_one_registration(tmp_path: Path, monkeypatch) -> None:
    """Registered once, a data set is detected, scanned as frames and prepared from videos with its label file."""
    import prepare_frames
    from test_frames import CountingStub, grey_frames, register, write_video

    register_toy(monkeypatch, priority=5)
    register(monkeypatch, "stub", CountingStub)
    videos = tmp_path / "videos"
    for rel in ("Live/a.avi", "Live/b.avi", "Made/c.avi"):
        write_video(videos / rel, grey_frames([40, 80, 120]))
    (videos / "toy.txt").write_text("real Live/a.avi\nreal Live/b.avi\nfake Made/c.avi\n")
    layout, by_class = video_files(videos, "auto", "c23")
    assert layout.name == "toy" and {name: [v.video for v in vs] for name, vs in by_class.items()} == {
        "Live": ["a", "b"], "Made": ["c"]}
    out = tmp_path / "frames"
    assert prepare_frames.main(["--videos-root", str(videos), "--out", str(out), "--frames-per-video", "2", "--detector",
                                "stub", "--align", "none", "--size", "32", "--workers", "0"]) == 0
    assert (out / "toy.txt").read_text() == (videos / "toy.txt").read_text()
    assert json.loads((out / "prepare.json").read_text())["crops"]["layout"] == "toy"
    df = scan(settings(out))
    assert df.drop_duplicates("video").set_index("video")["label"].to_dict() == {"Live/a": 0, "Live/b": 0, "Made/c": 1}
    assert len(df) == 6
