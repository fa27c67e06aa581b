"""Class: inputs outside "regular file, UTF-8 name, moderate size". Non-regular files are listed as failed and
never opened, odd names are a failed entry or one line (never a traceback or a crash), and labels that contradict
their class folder are refused."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest

import evaluate
from clipforensics.data.fingerprint import frame_stats, stats_hash
from clipforensics.data.manifest import manifest_hash
from clipforensics.detect.inputs import VIDEO, _expand_folder
from clipforensics.extract import models
from clipforensics.extract.reader import ImageFiles
from clipforensics.frames.inputs import find_videos
from clipforensics.frames.prepare import prepare
from clipforensics.frames.video import VideoError, read_sampled
from reliability.helpers import one_line_error
from reliability.test_report_replaced import predictions
from test_frames import grey_frames, settings, write_video

ODD = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8


@pytest.fixture()
def no_hang():
    """A test that would block forever (a FIFO opened for reading) fails after 20 s instead."""
    def stop(*_):
        raise TimeoutError("blocked")
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(20)
    yield
    signal.alarm(0)


def odd_folder(root):
    """A FIFO and a broken link named like inputs, beside nothing else."""
    os.mkfifo(root / "fifo.png")
    (root / "gone.png").symlink_to(root / "missing.png")


def test_extraction_lists_a_fifo_and_a_broken_link_as_failed_without_opening_them(tmp_path, no_hang):
    odd_folder(tmp_path)
    files = ImageFiles(tmp_path, ["fifo.png", "gone.png"], preprocess=lambda img: img, image_size=8)
    reasons = [files[i][2] for i in range(2)]
    assert "not a regular file" in reasons[0] and "broken link" in reasons[1]


def test_names_that_are_not_utf8_hash_without_a_traceback():
    df = pd.DataFrame({"path": [f"Real_youtube/{ODD}/0.png"], "label": [0], "manipulation": ["Real_youtube"],
                       "video": [f"Real_youtube/{ODD}"], "target": [""], "source": [""]})
    other = df.assign(path="Real_youtube/cafe/0.png", video="Real_youtube/cafe")
    assert manifest_hash(df) != manifest_hash(other)
    assert stats_hash(list(df["path"]), frame_stats("/nonexistent", list(df["path"])))


@pytest.mark.parametrize("kind", ["not utf-8", "broken link", "fifo"])
def test_opencv_is_never_handed_an_odd_video(tmp_path, kind, no_hang):
    path = tmp_path / (f"{ODD}.avi" if kind == "not utf-8" else "v.avi")
    if kind == "not utf-8":
        os.rename(write_video(tmp_path / "v.avi", grey_frames([10, 20])), path)  # OpenCV cannot even write it
    elif kind == "broken link":
        path.symlink_to(tmp_path / "missing.avi")
    else:
        os.mkfifo(path)
    with pytest.raises(VideoError, match="UTF-8|broken link|not a regular file"):
        read_sampled(path, 2)


def test_prepare_frames_lists_odd_videos_as_failed(tmp_path, no_hang):
    real = tmp_path / "videos" / "Real_youtube"
    real.mkdir(parents=True)
    write_video(real / "000.avi", grey_frames([10, 20, 30]))
    os.rename(write_video(real / "odd.avi", grey_frames([10, 20, 30])), real / f"{ODD}.avi")
    (real / "001.avi").symlink_to(real / "missing.avi")
    os.mkfifo(real / "002.avi")
    chosen = settings(tmp_path / "videos", tmp_path / "out", frames=2)
    assert {job.video for job in find_videos(chosen)} == {"000", ODD, "001", "002"}
    summary = prepare(chosen)
    failed = pd.read_csv(tmp_path / "out" / "failed_videos.csv", keep_default_na=False)
    assert summary.prepared == 1 and summary.failed == 3
    reasons = dict(zip(failed["video"], failed["reason"]))
    assert "broken link" in reasons["001"] and "not a regular file" in reasons["002"]
    assert "UTF-8" in reasons["caf\\xe9"]


def test_detect_lists_a_broken_link_video_in_a_folder(tmp_path):
    write_video(tmp_path / "a.avi", grey_frames([10, 20]))
    (tmp_path / "b.mp4").symlink_to(tmp_path / "missing.mp4")
    assert [(item.path.name, item.kind) for item in _expand_folder(tmp_path)] == [("a.avi", VIDEO), ("b.mp4", VIDEO)]


@pytest.mark.parametrize("memo", ["[1, 2]", '"text"', '{"key": [1]}', "{broken"])
def test_a_damaged_precision_memo_is_measured_again(tmp_path, monkeypatch, memo):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "clipforensics").mkdir()
    (tmp_path / "clipforensics" / "precision.json").write_text(memo)
    assert models._remembered("key") is None
    models._remember("key", {"precision": "fp32"})
    assert models._remembered("key") == {"precision": "fp32"}


@pytest.mark.parametrize("flipped", ["Real_youtube", "FaceSwap"])
def test_a_label_that_contradicts_its_class_folder_is_refused(tmp_path, capsys, flipped):
    path = predictions(tmp_path / "p.csv", 0)
    table = pd.read_csv(path)
    rows = table["path"].str.startswith(flipped)
    table.loc[rows, "label"] = 1 - table.loc[rows, "label"]
    table.to_csv(path, index=False)
    assert evaluate.main(["--predictions", path, "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 2
    assert "contradict their class folder" in one_line_error(capsys) and not (tmp_path / "r").exists()
