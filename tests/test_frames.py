"""prepare_frames.py: sampling rule, reading, crop geometry, fallbacks, resume, bad videos, layouts.

Alignment, tracking and the real dlib detector on a real face are in test_faces.py."""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import prepare_frames
from clipforensics.frames import detectors
from clipforensics.synthetic import scene as synthetic
from clipforensics.core.errors import UserError
from clipforensics.frames.align import centre_crop, cut, square_crop
from clipforensics.frames.detectors import Face
from clipforensics.frames import tables
from clipforensics.frames.inputs import find_videos
from clipforensics.frames.prepare import prepare
from clipforensics.frames.settings import FrameSettings
from clipforensics.frames.worker import frame_name
from clipforensics.frames.track import FALLBACKS, iou
from clipforensics.data.manifest import ManifestSettings, scan, video_table
from clipforensics.frames.video import VideoError, read_sampled, sample_indices
from conftest import lock_held_elsewhere

SEED = 0


# ---------------------------------------------------------------- helpers


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG") -> Path:
    """Encode BGR frames (MJPG .avi or mp4v .mp4: both work with this OpenCV build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (width, height))
    assert writer.isOpened(), f"cannot write {fourcc} to {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def face_frames(video: int, n: int, size: int) -> list[np.ndarray]:
    """Frames of one synthetic real video, as BGR (what OpenCV decodes)."""
    scene = synthetic.make_video(SEED, video, n, size)
    return [synthetic.add_noise(synthetic.render(scene, f, size), SEED, video, f)[..., ::-1].copy()
            for f in range(n)]


def grey_frames(values: list[int], shape: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Flat frames whose brightness tells which frame was decoded."""
    return [np.full((*shape, 3), value, np.uint8) for value in values]


def settings(root: Path, out: Path, **kw) -> FrameSettings:
    """Plain square crops (align none) unless a test asks: the stubs below check box geometry."""
    return FrameSettings(videos_root=str(root), out=str(out), **{"workers": 0, "size": 32, "align": "none", **kw})


def register(monkeypatch, name: str, factory) -> None:
    """A detector registered for one test only."""
    monkeypatch.setitem(detectors.DETECTORS, name, factory)


class CountingStub:
    """Registered as a detector: always the same known box; counts calls to prove skipped work."""

    calls = 0

    def __init__(self, box=(20.0, 18.0, 44.0, 50.0), score: float = 7.5) -> None:
        self.box, self.score = box, score

    def __call__(self, image: np.ndarray) -> list[Face]:
        CountingStub.calls += 1
        return [Face((0.0, 0.0, 4.0, 4.0), 1.0), Face(self.box, self.score)]  # the stronger track must win


@pytest.fixture
def stub(monkeypatch) -> type[CountingStub]:
    register(monkeypatch, "stub", CountingStub)
    CountingStub.calls = 0
    return CountingStub


def read_csv(path: Path) -> pd.DataFrame:
    """As prepare.py reads its parts: ids stay text, empty numbers are NaN, empty text stays empty."""
    return tables.read_table(path)


# ---------------------------------------------------------------- sampling and reading


@pytest.mark.parametrize("n, count, expected", [
    (60, 5, [0, 15, 30, 44, 59]),  # linspace 0, 14.75, 29.5, 44.25, 59 -> rint (halves to even)
    (3, 5, [0, 1, 2]),
    (10, 10, list(range(10))),
    (1, 4, [0]),
    (100, 1, [49]),  # one frame: the middle one
    (0, 5, []),
])
def test_sample_indices_rule(n, count, expected):
    assert sample_indices(n, count).tolist() == expected


def test_sample_indices_are_even_over_any_length():
    for n in range(1, 90):
        for count in range(1, 40):
            idx = sample_indices(n, count)
            assert len(idx) == min(n, count)
            assert (idx[0], idx[-1]) == ((0, n - 1) if count > 1 else ((n - 1) // 2, (n - 1) // 2))
            gaps = np.diff(idx)
            assert gaps.size == 0 or (gaps.min() >= 1 and gaps.max() - gaps.min() <= 1)


def test_read_sampled_returns_the_frames_at_those_indices(tmp_path):
    path = write_video(tmp_path / "v.avi", grey_frames([4 * i for i in range(60)]))
    got = read_sampled(path, 5)
    assert got.indices == (0, 15, 30, 44, 59) and got.n_frames == 60 and got.reported == 60
    assert [round(frame.mean() / 4) for frame in got.frames] == [0, 15, 30, 44, 59]


def test_a_header_that_claims_more_frames_is_corrected_by_reading(tmp_path):
    full = write_video(tmp_path / "full.avi", grey_frames([4 * i for i in range(60)]))
    cut_file = tmp_path / "truncated.avi"
    cut_file.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    got = read_sampled(cut_file, 5)
    assert got.reported == 60 and 0 < got.n_frames < 60  # the header lies; reading tells
    assert list(got.indices) == sample_indices(got.n_frames, 5).tolist()
    assert [round(frame.mean() / 4) for frame in got.frames] == list(got.indices)


def test_a_header_that_claims_fewer_frames_is_corrected_by_a_second_pass(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.avi", grey_frames([4 * i for i in range(60)]))
    monkeypatch.setattr("clipforensics.frames.video.reported_frame_count", lambda p: 10)
    got = read_sampled(path, 5)
    assert got.indices == (0, 15, 30, 44, 59) and got.reported == 10
    assert [round(frame.mean() / 4) for frame in got.frames] == [0, 15, 30, 44, 59]


@pytest.mark.parametrize("content", [b"", os.urandom(4096)])
def test_unreadable_files_raise_video_error(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match="cannot open"):
        read_sampled(path, 4)


def test_frame_names_are_zero_padded_source_indices():
    assert frame_name(5, 60) == "005.png"
    assert frame_name(5, 1500) == "0005.png"


# ---------------------------------------------------------------- crop geometry and detectors


@pytest.mark.parametrize("box, expected", [
    ((100, 100, 200, 180), (85, 75, 215, 205)),  # side round(1.3 x 100) = 130, centred on (150, 140)
    ((0, 0, 50, 50), (0, 0, 65, 65)),  # shifted into the frame, still square
    ((600, 440, 640, 480), (588, 428, 640, 480)),
    ((0, 0, 640, 480), (80, 0, 560, 480)),  # wider than the frame: the frame's height
])
def test_square_crop_examples(box, expected):
    assert square_crop(box, 640, 480, 1.3) == expected


def test_square_crop_around_true_synthetic_face_boxes():
    for video in range(12):
        box = synthetic.face_box(SEED, video, 0, 256)
        x0, y0, x1, y1 = square_crop(box, 256, 256, 1.3)
        side = x1 - x0
        assert side == y1 - y0 == min(256, math.floor(1.3 * max(box[2] - box[0], box[3] - box[1]) + 0.5))
        assert 0 <= x0 and 0 <= y0 and x1 <= 256 and y1 <= 256
        assert x0 <= box[0] and y0 <= box[1] and box[2] <= x1 and box[3] <= y1  # the whole face is kept


def test_centre_crop_is_the_largest_centred_square():
    assert centre_crop(640, 480) == (80, 0, 560, 480)
    assert centre_crop(100, 300) == (0, 100, 100, 200)


def test_haar_detector_runs_and_finds_most_synthetic_faces():
    detector = detectors.make_detector("haar")
    assert detector(np.full((240, 320, 3), 128, np.uint8)) == []
    overlaps = []
    for video in range(8):
        found = detector(face_frames(video, 1, 256)[0])
        assert isinstance(found, list) and all(np.isfinite(face.score) for face in found)
        if found:
            overlaps.append(iou(max(found, key=lambda face: face.area).box, synthetic.face_box(SEED, video, 0, 256)))
    assert len(overlaps) >= 5, "the Haar cascade no longer fires on most synthetic faces"
    assert min(overlaps) > 0.5


def test_detection_on_a_shrunk_copy_returns_boxes_in_frame_pixels():
    frame = cv2.resize(face_frames(1, 1, 256)[0], (512, 512), interpolation=cv2.INTER_CUBIC)
    best = max(detectors.detect(detectors.make_detector("haar"), frame, 256), key=lambda face: face.area)
    true = [2 * v for v in synthetic.face_box(SEED, 1, 0, 256)]
    assert iou(best.box, true) > 0.4


def test_unknown_detector_is_a_one_line_error(tmp_path, capsys):
    write_video(tmp_path / "in" / "Real_youtube" / "000.avi", grey_frames([50] * 3))
    code = prepare_frames.main(["--videos-root", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                                "--detector", "mtcnn"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: unknown detector 'mtcnn'; choose from dlib, dlib-cnn, haar"]


# ---------------------------------------------------------------- the pipeline


def test_crops_follow_the_detected_box_and_pixels_match(tmp_path, monkeypatch):
    size = 64
    box = synthetic.face_box(SEED, 1, 0, size)
    register(monkeypatch, "stub", lambda: CountingStub(tuple(map(float, box)), 7.5))
    path = write_video(tmp_path / "in" / "Real_youtube" / "001.avi", face_frames(1, 12, size))
    summary = prepare(settings(tmp_path / "in", tmp_path / "out", frames=4, detector="stub", size=48))
    assert (summary.prepared, summary.frames, summary.fallbacks) == (1, 4, 0)
    table = read_csv(tmp_path / "out" / "faces.csv")
    expected = square_crop(box, size, size, 1.3)
    assert table["frame"].tolist() == [0, 4, 7, 11]
    assert table[["x0", "y0", "x1", "y1"]].apply(tuple, axis=1).tolist() == [expected] * 4
    assert table[["face_x0", "face_y0", "face_x1", "face_y1"]].apply(tuple, axis=1).tolist() == [box] * 4
    assert (table["roll"] == 0).all() and np.allclose(table["scale"], 48 / (expected[2] - expected[0]))
    assert (table["score"] == 7.5).all() and (table["fallback"] == "").all() and (table["detector"] == "stub").all()
    for frame in (0, 4, 7, 11):  # the crop holds the true (moving) face of every sampled frame
        fx0, fy0, fx1, fy1 = synthetic.face_box(SEED, 1, frame, size)
        assert expected[0] <= fx0 + 1 and expected[1] <= fy0 + 1 and fx1 - 1 <= expected[2] and fy1 - 1 <= expected[3]
    decoded = read_sampled(path, 4)
    for index, frame in zip(decoded.indices, decoded.frames):
        png = cv2.imread(str(tmp_path / "out" / "Real_youtube" / "001" / frame_name(index, 12)))
        assert png.shape == (48, 48, 3)
        np.testing.assert_array_equal(png, cut(frame, expected, 48))


class BrightnessStub:
    """Finds a 'face' only in bright frames, at an x that encodes the brightness (so boxes differ)."""

    def __call__(self, image: np.ndarray) -> list[Face]:
        level = round(float(image.mean()) / 20)
        return [Face((float(level), 10.0, level + 20.0, 30.0), float(level))] if level >= 5 else []


def test_frames_without_a_face_take_the_tracks_neighbours_and_say_so(tmp_path, monkeypatch):
    register(monkeypatch, "bright", BrightnessStub)
    write_video(tmp_path / "in" / "Real_youtube" / "000.avi", grey_frames([40, 120, 40, 40, 200, 40]))
    write_video(tmp_path / "in" / "Real_youtube" / "001.avi", grey_frames([40, 40]))  # never a face
    summary = prepare(settings(tmp_path / "in", tmp_path / "out", frames=6, detector="bright"))
    table = read_csv(tmp_path / "out" / "faces.csv")
    first = table[table["video"] == "000"]
    assert first["fallback"].tolist() == ["nearest", "", "interpolated", "interpolated", "", "nearest"]
    x = [6, 6, 6 + 4 / 3, 6 + 8 / 3, 10, 10]  # detections at frames 1 (x=6) and 4 (x=10), linear in time between
    np.testing.assert_allclose(first["face_x0"], x, atol=0.01)
    boxes = first[["x0", "y0", "x1", "y1"]].apply(tuple, axis=1).tolist()
    assert boxes == [square_crop((v, 10, v + 20, 30), 64, 48, 1.3) for v in x]
    assert first["score"].isna().tolist() == [True, False, True, True, False, True]
    never = table[table["video"] == "001"]
    assert never["fallback"].tolist() == ["centre_crop"] * 2 and never["face_x0"].isna().all()
    assert never[["x0", "y0", "x1", "y1"]].apply(tuple, axis=1).tolist() == [centre_crop(64, 48)] * 2
    videos = read_csv(tmp_path / "out" / "videos.csv").set_index("video")
    assert videos.loc["000", ["detected", "fallbacks", "tracks"]].tolist() == [2, 4, 1]
    assert videos.loc["001", ["detected", "fallbacks", "tracks"]].tolist() == [0, 2, 0]
    assert summary.fallbacks == 6


def test_a_short_video_gives_all_its_frames_and_is_recorded(tmp_path, stub):
    write_video(tmp_path / "in" / "Real_youtube" / "000.avi", grey_frames([30, 90, 150]))
    summary = prepare(settings(tmp_path / "in", tmp_path / "out", frames=8, detector="stub"))
    assert sorted(p.name for p in (tmp_path / "out" / "Real_youtube" / "000").iterdir()) == \
        ["000.png", "001.png", "002.png"]
    videos = read_csv(tmp_path / "out" / "videos.csv")
    assert videos[["frames_read", "frames_written", "short"]].values.tolist() == [[3, 3, True]]
    assert summary.short == 1 and "1 shorter than 8 frames" in summary.line(8)


def _tree(root: Path, n: int = 3) -> None:
    for video in range(n):
        write_video(root / "Real_youtube" / f"{video:03d}.avi", grey_frames([40 + 30 * video] * 6))


def test_rerun_skips_finished_videos_and_finishes_interrupted_ones(tmp_path, stub):
    _tree(tmp_path / "in")
    out = tmp_path / "out"
    first = prepare(settings(tmp_path / "in", out, frames=3, detector="stub"))
    assert (first.prepared, first.skipped, stub.calls) == (3, 0, 9)
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert len(written) == 9

    again = prepare(settings(tmp_path / "in", out, frames=3, detector="stub"))
    assert (again.prepared, again.skipped, stub.calls) == (0, 3, 9)  # no video decoded or detected again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == written

    # A crash after video 001's rows were saved but before its folder was renamed in, with its temporary left.
    os.replace(out / "Real_youtube" / "001", out / "Real_youtube" / ".001.tmp-99999")
    resumed = prepare(settings(tmp_path / "in", out, frames=3, detector="stub"))
    assert (resumed.prepared, resumed.skipped, stub.calls) == (1, 2, 12)
    assert not list(out.rglob(".*.tmp-*"))
    table = read_csv(out / "faces.csv")
    assert table.groupby("video").size().to_dict() == {"000": 3, "001": 3, "002": 3}


def test_other_settings_are_refused_and_overwrite_redoes(tmp_path, stub, capsys):
    _tree(tmp_path / "in", 1)
    args = ["--videos-root", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--detector", "stub",
            "--workers", "0", "--size", "32"]
    assert prepare_frames.main([*args, "--frames-per-video", "2"]) == 0
    assert prepare_frames.main([*args, "--frames-per-video", "3"]) == 2
    assert "other settings (frames 2 -> 3)" in capsys.readouterr().err
    assert prepare_frames.main([*args, "--frames-per-video", "3", "--overwrite"]) == 0
    assert len(list((tmp_path / "out" / "Real_youtube" / "000").iterdir())) == 3


def test_a_foreign_non_empty_out_and_a_second_run_are_refused(tmp_path, stub):
    _tree(tmp_path / "in", 1)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        prepare(settings(tmp_path / "in", tmp_path / "foreign", detector="stub"))
    out = tmp_path / "out"
    out.mkdir()
    with lock_held_elsewhere(out / ".prepare_frames.lock"):
        with pytest.raises(UserError, match="another process is writing"):
            prepare(settings(tmp_path / "in", out, detector="stub"))


def test_corrupt_videos_are_listed_and_skipped(tmp_path, stub, capsys):
    _tree(tmp_path / "in", 1)
    (tmp_path / "in" / "Real_youtube" / "noise.mp4").write_bytes(os.urandom(5000))
    (tmp_path / "in" / "Real_youtube" / "empty.avi").write_bytes(b"")
    out = tmp_path / "out"
    code = prepare_frames.main(["--videos-root", str(tmp_path / "in"), "--out", str(out), "--detector", "stub",
                                "--workers", "0", "--frames-per-video", "2", "--size", "32"])
    assert code == 0 and "2 failed" in capsys.readouterr().out
    failed = read_csv(out / "failed_videos.csv")
    assert failed["video"].tolist() == ["empty", "noise"] and failed["reason"].str.contains("cannot open").all()
    assert sorted(p.name for p in (out / "Real_youtube").iterdir()) == ["000"]
    assert read_csv(out / "faces.csv")["video"].unique().tolist() == ["000"]


def test_all_videos_failing_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "in" / "Real_youtube").mkdir(parents=True)
    (tmp_path / "in" / "Real_youtube" / "noise.mp4").write_bytes(os.urandom(5000))
    code = prepare_frames.main(["--videos-root", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) >= 1 and err[-1].startswith("error: all 1 videos failed")
    assert read_csv(tmp_path / "out" / "failed_videos.csv")["video"].tolist() == ["noise"]


# ---------------------------------------------------------------- layouts


def _ffpp_tree(root: Path, size: int = 96, n: int = 8) -> None:
    real = {0: face_frames(0, n, size), 3: face_frames(3, n, size)}
    for video, frames in real.items():
        write_video(root / "original_sequences/youtube/c23/videos" / f"{video:03d}.mp4", frames, "mp4v")
    for method in ("FaceSwap", "Deepfakes"):
        for target, source in ((0, 3), (3, 0)):
            write_video(root / f"manipulated_sequences/{method}/c23/videos/{target:03d}_{source:03d}.mp4",
                        real[target], "mp4v")
    write_video(root / "original_sequences/youtube/c40/videos/005.mp4", real[0][:3], "mp4v")


def test_ffpp_layout_becomes_a_data_root_that_the_manifest_reads(tmp_path, capsys):
    _ffpp_tree(tmp_path / "ffpp")
    out = tmp_path / "data"
    code = prepare_frames.main(["--videos-root", str(tmp_path / "ffpp"), "--out", str(out), "--frames-per-video", "4",
                                "--size", "64", "--workers", "2"])  # real Haar detector, two worker processes
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in (out / "FaceSwap" / "000_003").iterdir())
    assert names == ["000.png", "002.png", "005.png", "007.png"]  # rint(linspace(0, 7, 4)) = 0, 2, 5, 7
    manifest = scan(ManifestSettings(data_root=str(out)))
    table = video_table(manifest).set_index("video")
    assert table.index.tolist() == ["Deepfakes/000_003", "Deepfakes/003_000", "FaceSwap/000_003",
                                    "FaceSwap/003_000", "Real_youtube/000", "Real_youtube/003"]
    assert (table["n_frames"] == 4).all()
    assert table.loc["FaceSwap/000_003", ["label", "target", "source"]].tolist() == [1, "000", "003"]
    assert table.loc["Real_youtube/003", ["label", "target", "source"]].tolist() == [0, "003", ""]
    boxes = read_csv(out / "faces.csv")
    assert len(boxes) == 24 and set(boxes["fallback"]) <= set(FALLBACKS)
    assert {cv2.imread(str(p)).shape for p in out.rglob("*.png")} == {(64, 64, 3)}


def test_ffpp_compression_and_class_selection(tmp_path):
    root = tmp_path / "ffpp"
    for path in ("original_sequences/youtube/c23/videos/000.mp4", "original_sequences/youtube/c40/videos/001.mp4",
                 "original_sequences/actors/c23/videos/01__walk.mp4",
                 "manipulated_sequences/FaceSwap/c23/videos/000_003.MP4",
                 "manipulated_sequences/FaceSwap/c23/masks/videos/000_003.mp4",
                 "manipulated_sequences/FaceSwap/c23/videos/notes.txt"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    found = {(j.class_name, j.video) for j in find_videos(settings(root, tmp_path / "o"))}
    assert found == {("Real_youtube", "000"), ("FaceSwap", "000_003")}  # Real_actors only on request
    actors = find_videos(settings(root, tmp_path / "o", classes=("Real_actors", "Real_youtube")))
    assert [(j.class_name, j.video) for j in actors] == [("Real_actors", "01__walk"), ("Real_youtube", "000")]
    c40 = find_videos(settings(root, tmp_path / "o", compression="c40"))
    assert [(j.class_name, j.video) for j in c40] == [("Real_youtube", "001")]
    only = find_videos(settings(root, tmp_path / "o", classes=("FaceSwap",)))
    assert [(j.class_name, j.video) for j in only] == [("FaceSwap", "000_003")]
    with pytest.raises(UserError, match="compressions found: c23, c40"):
        find_videos(settings(root, tmp_path / "o", compression="raw"))
    with pytest.raises(UserError, match="available: FaceSwap, Real_actors, Real_youtube"):
        find_videos(settings(root, tmp_path / "o", classes=("NeuralTextures",)))


def test_class_folder_layout_and_its_errors(tmp_path):
    root = tmp_path / "videos"
    for path in ("Real/a.mp4", "Real/b.AVI", "Real/c.mov", "Real/d.mkv", "Real/.hidden.mp4", "Fake/x_y.mp4",
                 "Fake/readme.md", ".cache/z.mp4"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    jobs = find_videos(settings(root, tmp_path / "o"))
    assert [(j.class_name, j.video) for j in jobs] == [("Fake", "x_y"), ("Real", "a"), ("Real", "b"),
                                                        ("Real", "c"), ("Real", "d")]
    assert len(find_videos(settings(root, tmp_path / "o", max_videos=2))) == 3
    (root / "Real" / "a.avi").write_bytes(b"x")
    with pytest.raises(UserError, match="Real/a"):
        find_videos(settings(root, tmp_path / "o"))
    with pytest.raises(UserError, match="does not exist"):
        find_videos(settings(tmp_path / "missing", tmp_path / "o"))
    (tmp_path / "empty" / "Real").mkdir(parents=True)
    with pytest.raises(UserError, match="no videos"):
        find_videos(settings(tmp_path / "empty", tmp_path / "o"))


@pytest.mark.parametrize("flag, value, message", [
    ("--frames-per-video", "0", "--frames-per-video must be at least 1"),
    ("--margin", "0.5", "--margin must be at least 1.0"),
    ("--workers", "-1", "--workers must be 0 (in the main process) or more"),
    ("--align", "rotate", "unknown alignment 'rotate'; choose from five-point, deepfakebench, none"),
])
def test_bad_numbers_are_one_line_errors(tmp_path, capsys, flag, value, message):
    code = prepare_frames.main(["--videos-root", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
