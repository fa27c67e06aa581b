"""Face crops on par with the field: alignment geometry, tracking, and dlib on a real face end to end.

The real face is scikit-image's bundled `astronaut.png` (public domain), turned between -20 and 20
degrees and moved frame by frame; the crops are measured again with dlib's own detector and 5-point
model, independently of the pipeline that made them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata
from skimage.transform import SimilarityTransform

import extract_features
import prepare_frames
from clipforensics.core.errors import UserError
from clipforensics.data.cache import check_identity, read_cache
from clipforensics.frames import align, detectors
from clipforensics.frames.crops import parse_points
from clipforensics.frames.detectors import LANDMARKS, Face, make_detector, rgb
from clipforensics.frames.tables import read_table
from clipforensics.frames.track import CENTRE_CROP, INTERPOLATED, NEAREST, choose_track, fill_gaps
from conftest import TINY

# ---------------------------------------------------------------- the astronaut video

FACE_CENTRE = (220.0, 121.0)  # in astronaut.png (512 x 512), between the eyes
WIDTH, HEIGHT = 480, 360
ANGLES = np.linspace(-20, 20, 7)
PASTED = 1  # the frame that also shows a second, larger, upright face


def shift(i: int) -> tuple[float, float]:
    """Where frame i puts the face centre, relative to the frame centre: a slow circle."""
    return 20 * math.cos(2 * math.pi * i / len(ANGLES)), 12 * math.sin(2 * math.pi * i / len(ANGLES))


def place(photo: np.ndarray, angle: float, scale: float, centre: tuple[float, float]) -> np.ndarray:
    """The photo turned by `angle` degrees (counter-clockwise on screen) about its face, face at `centre`."""
    matrix = cv2.getRotationMatrix2D(FACE_CENTRE, float(angle), scale)
    matrix[:, 2] += np.array(centre) - np.array(FACE_CENTRE)
    return cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))


def astronaut_frames() -> list[np.ndarray]:
    photo = np.ascontiguousarray(skdata.astronaut()[..., ::-1])  # BGR, as decoded videos are
    frames = []
    for i, angle in enumerate(ANGLES):
        dx, dy = shift(i)
        frame = place(photo, angle, 1.0, (WIDTH / 2 + dx, HEIGHT / 2 + dy))
        if i == PASTED:  # an upright face 1.3x larger in the left of the frame, beside the turned one
            other = place(photo, 0.0, 1.3, (70.0, HEIGHT / 2 - 40))
            frame[:, :140] = other[:, :140]
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (WIDTH, HEIGHT))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def eye_line_angle(crop_bgr: np.ndarray) -> float:
    """Measured afresh on a crop: dlib HOG finds the face, the 5-point model its eye corners."""
    found = make_detector("dlib")(crop_bgr)
    assert found, "no face found again on the crop"
    best = max(found, key=lambda face: face.score)
    points = LANDMARKS.get("5").predict(rgb(crop_bgr), best.box)
    right, left = points[0:2].mean(axis=0), points[2:4].mean(axis=0)  # image-right eye, image-left eye
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


SIZE = 192
ARGS = ["--frames-per-video", "7", "--size", str(SIZE), "--detect-max-side", "320", "--workers", "0"]


@pytest.fixture(scope="module")
def astronaut_root(tmp_path_factory) -> tuple[Path, Path, str]:
    """One prepare_frames.py run with the defaults (dlib, five-point) on the astronaut video and a corrupt one."""
    videos = tmp_path_factory.mktemp("videos")
    frames = astronaut_frames()
    write_video(videos / "Real_youtube" / "000.avi", frames)
    write_video(videos / "FaceSwap" / "000_001.avi", frames[::-1])
    (videos / "FaceSwap" / "broken.mp4").write_bytes(os.urandom(3000))
    out = tmp_path_factory.mktemp("prepared") / "data"
    code = prepare_frames.main(["--videos-root", str(videos), "--out", str(out), *ARGS])
    assert code == 0
    return videos, out, ""


def test_dlib_crops_are_upright_and_the_same_size(astronaut_root):
    _, out, _ = astronaut_root
    pngs = sorted((out / "Real_youtube" / "000").glob("*.png"))
    assert len(pngs) == len(ANGLES)
    table = read_table(out / "faces.csv").query("video == '000'").reset_index(drop=True)
    assert (table["fallback"] == "").all(), "dlib missed the astronaut in a frame"
    for path, angle, roll in zip(pngs, ANGLES, table["roll"]):
        crop = cv2.imread(str(path))
        assert crop.shape == (SIZE, SIZE, 3)
        assert abs(eye_line_angle(crop)) < 3.0, f"crop of the frame turned by {angle:.1f} degrees is not upright"
    # The recorded roll undoes each frame's turn (the photo's own head tilt, ~3 degrees, is the constant).
    tilt = table["roll"] + ANGLES
    assert (abs(tilt - tilt.median()) < 2.0).all() and abs(tilt.median()) < 6


def test_the_track_keeps_the_person_when_a_second_face_appears(astronaut_root):
    _, out, _ = astronaut_root
    table = read_table(out / "faces.csv").query("video == '000'").reset_index(drop=True)
    videos = read_table(out / "videos.csv").set_index("video")
    assert videos.loc["000", "tracks"] >= 2 and videos.loc["000", "other_detections"] >= 1  # it was seen
    for i, row in table.iterrows():
        dx, dy = shift(i)
        centre = ((row.face_x0 + row.face_x1) / 2, (row.face_y0 + row.face_y1) / 2)
        assert math.dist(centre, (WIDTH / 2 + dx, HEIGHT / 2 + dy)) < 25, f"frame {i} follows another face"


def test_faces_csv_records_landmarks_and_the_transform_that_made_each_crop(astronaut_root):
    _, out, _ = astronaut_root
    table = read_table(out / "faces.csv").query("video == '000'")
    target = align.canonical(align.five_point_template(), 1.3, SIZE)
    for _, row in table.iterrows():
        matrix = row[["m00", "m01", "m02", "m10", "m11", "m12"]].to_numpy(float).reshape(2, 3)
        points = parse_points(row.landmarks5)
        assert points.shape == (5, 2) and row.landmarks68 == ""
        assert np.abs(align.apply(matrix, points) - target).max() < 0.08 * SIZE  # the fit it records
        assert row.roll == pytest.approx(align.matrix_roll(matrix), abs=1e-3)
        assert row.detector == "dlib" and row.score > 0


def test_prepare_json_records_the_recipe_and_resume_and_failures_still_hold(astronaut_root, capsys):
    videos, out, _ = astronaut_root
    record = json.loads((out / "prepare.json").read_text())
    recipe = record["crops"]
    assert {k: recipe[k] for k in ("detector", "align", "margin", "size", "frames", "landmarks")} == \
        {"detector": "dlib", "align": "five-point", "margin": 1.3, "size": SIZE, "frames": 7, "landmarks": ["5"]}
    assert set(recipe["models"]) == {"shape_predictor_5_face_landmarks.dat"}
    assert record["packages"]["dlib"] and record["packages"]["opencv"] == cv2.__version__
    failed = read_table(out / "failed_videos.csv")
    assert failed["video"].tolist() == ["broken"]
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert prepare_frames.main(["--videos-root", str(videos), "--out", str(out), *ARGS]) == 0
    assert "skipped 2 already finished" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == written
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert prepare_frames.main(["--videos-root", str(videos), "--out", str(out), *ARGS, "--align", "none"]) == 2
    assert "align 'five-point' -> 'none'" in capsys.readouterr().err


def test_extraction_copies_the_recipe_and_treats_it_as_identity(astronaut_root, tmp_path, capsys):
    _, out, _ = astronaut_root
    cache_path = tmp_path / "c.h5"
    assert extract_features.main(["--data-root", str(out), "--out", str(cache_path), *TINY]) == 0
    cache = read_cache(cache_path)
    recipe = json.loads((out / "prepare.json").read_text())["crops"]
    assert cache.attrs["crops"] == recipe and cache.identity()["crops"] == recipe
    with pytest.raises(UserError, match="crops"):
        check_identity(cache.attrs, {**cache.identity(), "crops": {**recipe, "align": "none"}}, what="c")
    record = json.loads((out / "prepare.json").read_text())
    record["crops"]["size"] = 224  # the same paths, other crops: refused, never mixed
    (out / "prepare.json").write_text(json.dumps(record))
    try:
        assert extract_features.main(["--data-root", str(out), "--out", str(cache_path), *TINY]) == 2
        assert "crops" in capsys.readouterr().err
    finally:
        record["crops"]["size"] = SIZE
        (out / "prepare.json").write_text(json.dumps(record))


def test_landmarks_68_and_the_deepfakebench_alignment(astronaut_root, tmp_path):
    videos, _, _ = astronaut_root
    out = tmp_path / "dfb"
    assert prepare_frames.main(["--videos-root", str(videos), "--out", str(out), *ARGS, "--classes", "Real_youtube",
                                "--align", "deepfakebench"]) == 0
    table = read_table(out / "faces.csv")
    row = table.iloc[3]
    points68 = parse_points(row.landmarks68)
    assert points68.shape == (68, 2) and parse_points(row.landmarks5).shape == (5, 2)
    matrix = row[["m00", "m01", "m02", "m10", "m11", "m12"]].to_numpy(float).reshape(2, 3)
    np.testing.assert_allclose(matrix, deepfakebench_matrix(points68, SIZE), atol=1e-4)
    assert json.loads((out / "prepare.json").read_text())["crops"]["landmarks"] == ["5", "68"]


# ---------------------------------------------------------------- alignment geometry


def deepfakebench_matrix(points68: np.ndarray, res: int, scale: float = 1.3) -> np.ndarray:
    """DeepfakeBench's img_align_crop, step by step as their preprocess.py does it (with scikit-image)."""
    dst = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655],
                    [62.7299, 92.2041]])
    dst[:, 0] += 8.0
    dst = dst * res / 112
    margin = res * (scale - 1) / 2.0
    dst = (dst + margin) * (res / (res + 2 * margin))
    src = points68[[37, 44, 30, 49, 55]]
    return SimilarityTransform.from_estimate(src, dst).params[:2]


def test_similarity_is_the_least_squares_fit():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (5, 2))
    truth = np.array([[0.8, -0.4, 30.0], [0.4, 0.8, -12.0]])
    dst = align.apply(truth, src) + rng.normal(0, 2.0, (5, 2))
    np.testing.assert_allclose(align.similarity(src, dst), SimilarityTransform.from_estimate(src, dst).params[:2],
                               atol=1e-5)


def test_deepfakebench_alignment_matches_their_code_on_random_landmarks():
    rng = np.random.default_rng(1)
    points68 = rng.uniform(100, 300, (68, 2))
    matrix, square = align.ALIGNMENTS.get("deepfakebench").matrix({"68": points68}, None, 640, 480, 1.3, 256)
    assert square is None
    np.testing.assert_allclose(matrix, deepfakebench_matrix(points68, 256), atol=1e-5)


def test_five_point_template_is_level_and_frames_an_average_face_like_arcface():
    template = align.five_point_template()
    outer_left, outer_right = template[2], template[0]
    assert abs(math.degrees(math.atan2(*(outer_right - outer_left)[::-1]))) < 0.5  # eyes level
    assert abs(template[4, 0] - 0.5) < 0.01 and template[4, 1] > template[0, 1]  # nose centred, below the eyes
    # dlib's mean face through the fit lands on ArcFace's template within 2% of the face square
    mean = align.DLIB_MEAN_FACE
    arcface_points = np.array([np.mean([mean[i] for i in range(36, 42)], axis=0),
                               np.mean([mean[i] for i in range(42, 48)], axis=0), mean[30], mean[48], mean[54]])
    fit = align.similarity(arcface_points, align.ARCFACE_112 / 112)
    assert np.abs(align.apply(fit, arcface_points) - align.ARCFACE_112 / 112).max() < 0.02
    # DeepfakeBench's keypoints (upper-lip 49, lower-lip 55 as "mouth corners") tilt that same face
    dfb = align.similarity(np.array([mean[37], mean[44], mean[30], [0.340985, 0.745405], [0.642159, 0.864805]]),
                           align.ARCFACE_112 / 112)
    assert 2.0 < abs(align.matrix_roll(dfb)) < 3.0


def test_margin_arithmetic_is_deepfakebenchs():
    unit = align.ARCFACE_112 / 112
    for margin, size in ((1.0, 112), (1.3, 256), (2.0, 64)):
        extra = size * (margin - 1) / 2
        expected = (unit * size + extra) * size / (size + 2 * extra)
        np.testing.assert_allclose(align.canonical(unit, margin, size), expected)


def test_box_matrix_is_where_cut_puts_a_pixel_and_bounds_invert_it():
    image = np.zeros((120, 160, 3), np.uint8)
    image[50:53, 90:93] = 255  # a dot centred on pixel (91, 51)
    for box, size in (((60, 20, 140, 100), 40), ((80, 40, 110, 70), 90)):
        crop = align.cut(image, box, size)[..., 0].astype(float)
        ys, xs = np.nonzero(crop > 0)
        weights = crop[ys, xs]
        centroid = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
        expected = align.apply(align.box_matrix(box, size), [[91.0, 51.0]])[0]
        assert np.abs(centroid - expected).max() < 0.35
        np.testing.assert_allclose(align.source_bounds(align.box_matrix(box, size), size), box, atol=1e-9)


# ---------------------------------------------------------------- tracking


def face(x: float, y: float, side: float = 40.0, score: float = 1.0) -> Face:
    return Face((x, y, x + side, y + side), score)


def test_a_stronger_face_in_one_frame_does_not_switch_the_track():
    person = [[face(100 + 10 * i, 80)] for i in range(6)]
    person[2] = person[2] + [face(300, 60, side=90, score=3.0)]  # larger and more confident, once
    track = choose_track(person)
    assert [f.box[0] for f in track.faces] == [100 + 10 * i for i in range(6)]
    assert (track.n_tracks, track.other_detections) == (2, 1)


def test_a_weak_false_detection_in_every_frame_loses_to_the_person_even_with_misses():
    frames = [[face(100, 80, score=1.2), face(100, 300, score=0.1)] for _ in range(6)]
    frames[1] = frames[1][1:]
    frames[4] = frames[4][1:]  # the person is missed twice, the suit "face" never
    track = choose_track(frames)
    assert [None if f is None else f.box[1] for f in track.faces] == [80, None, 80, 80, None, 80]


def test_a_moving_face_stays_one_track_and_a_face_beside_it_does_not_join():
    moving = [[face(100 + 35 * i, 80)] for i in range(5)]  # nearly its width per sampled frame
    assert choose_track(moving).n_tracks == 1
    beside = [[face(100, 80, score=2.0)], [face(160, 80, score=0.5)], [face(100, 80, score=2.0)]]
    track = choose_track(beside)  # 1.5 widths away: another face, not the person moving and back
    assert track.faces[1] is None and track.n_tracks == 2


def test_gaps_are_interpolated_in_time_or_copied_from_the_nearest_detection():
    a, b = face(100, 80), face(200, 80)
    marks = {"5": np.zeros((5, 2))}
    marks_b = {"5": np.full((5, 2), 10.0)}
    times = [0, 10, 40, 50, 60]
    filled = fill_gaps(times, [None, a, None, b, None], [None, marks, None, marks_b, None])
    assert [f.fallback for f in filled] == [NEAREST, "", INTERPOLATED, "", NEAREST]
    assert filled[2].box[0] == pytest.approx(100 + 100 * 30 / 40)  # weighted by time, not by position
    np.testing.assert_allclose(filled[2].landmarks["5"], 7.5)
    assert filled[0].box == a.box and filled[4].box == b.box and math.isnan(filled[2].score)
    assert [f.fallback for f in fill_gaps([0, 1], [None, None], [None, None])] == [CENTRE_CROP] * 2


def test_detection_on_a_shrunk_copy_maps_boxes_back_and_retries_full_size_when_it_finds_nothing():
    class NeedsPixels:
        """Finds the one 'face' at (200, 100, 280, 180) of a 640-wide frame only if it is at least 60 px."""

        def __call__(self, image: np.ndarray) -> list[Face]:
            scale = image.shape[1] / 640
            return [Face((200 * scale, 100 * scale, 280 * scale, 180 * scale), 1.0)] if 80 * scale >= 60 else []

    frame = np.zeros((480, 640, 3), np.uint8)
    [shrunk] = detectors.detect(NeedsPixels(), frame, 512)  # 0.8x: the face is 64 px there, mapped back
    np.testing.assert_allclose(shrunk.box, (200, 100, 280, 180))
    assert detectors.detect(NeedsPixels(), frame, 320, retry_full=False) == []  # 40 px: too small
    assert detectors.detect(NeedsPixels(), frame, 320)[0].box == (200, 100, 280, 180)  # found again at full size
