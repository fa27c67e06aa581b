"""Issue 11, silently wrong results: each becomes a clear error, a listed failure, or correct."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import evaluate
import extract_features
from clipforensics.data import cache as cache_mod
from clipforensics.data.cache import read_cache
from clipforensics.data.images import load_rgb, to_rgb
from clipforensics.data.scores import read_scores
from clipforensics.core.errors import UserError
from conftest import TINY
from reliability.helpers import one_line_error

# ---------------------------------------------------------------- 4: a column the user gives is kept


def _external(tmp_path, n_videos: int = 16):
    """Flat-named frames whose given video ids differ from what the path rule would derive."""
    rows = []
    rng = np.random.default_rng(0)
    for v in range(n_videos):
        label = v % 2
        for f in range(3):
            rows.append({"path": f"{'FaceSwap' if label else 'Real_youtube'}/clip_{f:03d}.png".replace(
                "clip", f"clip{v // 8}"), "score": float(rng.random() * 0.5 + 0.4 * label), "label": label,
                "video": f"v{v:02d}"})
    return pd.DataFrame(rows)


def test_a_given_video_column_is_never_replaced(tmp_path, capsys):
    table = _external(tmp_path)
    table["path"] = [f"{p[:-4]}_{i}.png" for i, p in enumerate(table["path"])]
    path = tmp_path / "pred.csv"
    table.to_csv(path, index=False)
    read = read_scores(path)
    assert read["video"].tolist() == table["video"].tolist()
    assert evaluate.main(["--predictions", str(path), "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["runs"]["pred"]["test"]["video"]["n_real"] + metrics["runs"]["pred"]["test"]["video"]["n_fake"] == 16


@pytest.mark.parametrize("records, words", [
    ([{"path": 3, "score": 0.5, "label": 0}], "no text in column 'path'"),
    ([{"path": "Real_youtube/0/0.png", "score": 0.5, "label": 0, "split": None}], "no text in column 'split'"),
    ([{"path": "Real_youtube/0/0.png", "score": 0.5, "label": 0, "split": "tset"}], "unknown split"),
    ([{"path": "Real_youtube/0/0.png", "score": [1], "label": 0}], "numeric score"),
    ({"path": "Real_youtube/0/0.png"}, "JSON list of records"),
    ([{"path": "Real_youtube/0/0.png", "score": 0.2, "label": 0},
      {"path": "Real_youtube/0/0.png", "score": 0.3, "label": 0}], "appear more than once"),
    ([{"path": "FaceSwap/a/0.png", "score": 0.2, "label": 1, "video": "x", "manipulation": "FaceSwap"},
      {"path": "Deepfakes/a/0.png", "score": 0.3, "label": 1, "video": "x", "manipulation": "Deepfakes"}],
     "several manipulations"),
])
def test_bad_prediction_records_are_one_line_errors(records, words, tmp_path, capsys):
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(records))
    assert evaluate.main(["--predictions", str(path), "--out", str(tmp_path / "r")]) == 2
    assert words in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_a_same_stem_json_that_is_not_ours_is_ignored(tmp_path, capsys):
    table = _external(tmp_path)
    table["path"] = [f"{p[:-4]}_{i}.png" for i, p in enumerate(table["path"])]
    table.to_csv(tmp_path / "scores.csv", index=False)
    for content in ("[1, 2, 3]", "not json at all", '{"name": 5}'):
        (tmp_path / "scores.json").write_text(content)
        assert evaluate.main([str(tmp_path / "scores.csv"), "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0


# ---------------------------------------------------------------- 5: frames rewritten in place


@pytest.fixture
def small_root(synthetic_root, tmp_path):
    root = tmp_path / "root"
    for cls in ("Real_youtube", "FaceSwap"):
        for video in sorted((synthetic_root / cls).iterdir())[:6]:
            shutil.copytree(video, root / cls / video.name, copy_function=shutil.copy2)
    return root


def extract(root, out, *extra) -> int:
    return extract_features.main(["--data-root", str(root), "--out", str(out), *TINY, "--prompt-sets", "v1", *extra])


def test_frames_rewritten_under_the_same_names_are_detected(small_root, tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert extract(small_root, out) == 0
    before = read_cache(out).embeddings.copy()
    frame = sorted((small_root / "Real_youtube").rglob("*.png"))[0]
    Image.open(frame).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(frame)
    capsys.readouterr()
    assert extract(small_root, out) == 2
    line = one_line_error(capsys)
    assert "1 of 24 frames" in line and "changed since the existing cache" in line and "--overwrite" in line
    assert np.array_equal(read_cache(out).embeddings, before)
    assert extract(small_root, out, "--overwrite") == 0
    assert not np.array_equal(read_cache(out).embeddings, before)


def test_a_touched_frame_of_the_same_size_is_detected(small_root, tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert extract(small_root, out) == 0
    frame = sorted((small_root / "FaceSwap").rglob("*.png"))[-1]
    st = frame.stat()
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    assert extract(small_root, out) == 2
    assert "same size, other modification time" in one_line_error(capsys)


# ---------------------------------------------------------------- 6: damaged caches are refused


def _damage(path, edit) -> None:
    with h5py.File(path, "r+") as h5:
        edit(h5)


def _rechecksum(ds) -> None:
    ds.attrs[cache_mod.CHECKSUM] = cache_mod._crc(ds[()])  # damage the checksum cannot see


@pytest.mark.parametrize("name, edit, words", [
    ("flipped", lambda h5: h5["image_embeddings"].__setitem__((3, 5), -h5["image_embeddings"][3, 5] - 1),
     "does not match its checksum"),
    ("label", lambda h5: (h5["label"].__setitem__(0, -2), _rechecksum(h5["label"])), "/label holds [-2]"),
    ("nan", lambda h5: (h5["image_embeddings"].__setitem__((1, 0), np.nan), _rechecksum(h5["image_embeddings"])),
     "1 rows with NaN"),
    ("short", lambda h5: (h5.__delitem__("video"), h5.create_dataset("video", data=np.array(["x"], dtype=object),
                                                                      dtype=h5py.string_dtype())),
     "/video has 1 rows"),
])
def test_damaged_cache_contents_are_refused(name, edit, words, tiny_cache, tmp_path, capsys):
    bad = tmp_path / f"{name}.h5"
    shutil.copy(tiny_cache, bad)
    _damage(bad, edit)
    with pytest.raises(UserError, match="is damaged|does not match"):
        read_cache(bad)
    assert evaluate.main(["matrix", "--cache", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert words in one_line_error(capsys)


# ---------------------------------------------------------------- 7: file-system states and image kinds


def test_a_link_loop_and_a_second_link_are_refused(small_root, tmp_path, capsys):
    loop = small_root / "Real_youtube" / sorted(os.listdir(small_root / "Real_youtube"))[0] / "again"
    loop.symlink_to(loop.parent.parent)
    assert extract(small_root, tmp_path / "c.h5") == 2
    assert "a link loop or a second link" in one_line_error(capsys)
    loop.unlink()
    (small_root / "FaceSwap" / "alias").symlink_to(sorted((small_root / "FaceSwap").iterdir())[0])
    assert extract(small_root, tmp_path / "c.h5") == 2
    assert "every frame must be reachable by one path" in one_line_error(capsys)
    assert not (tmp_path / "c.h5").exists()


def test_an_unreadable_folder_is_named_not_skipped(small_root, tmp_path, capsys, monkeypatch):
    hidden = sorted((small_root / "FaceSwap").iterdir())[0]
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(hidden):
            raise PermissionError(13, "Permission denied", str(hidden))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert extract(small_root, tmp_path / "c.h5") == 2
    line = one_line_error(capsys)
    assert f"folder {hidden} cannot be read (Permission denied)" in line and "has no images" not in line


def test_sixteen_bit_frames_are_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], np.rint(values / 257.0).astype(np.uint8))
    assert (rgb == 255).mean() < 0.01


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left of the stored picture
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(pixels).save(tmp_path / "side.jpg", exif=exif, quality=95)
    upright = np.asarray(load_rgb(tmp_path / "side.jpg"))
    assert upright.shape == (40, 20, 3) and upright[:10].mean() > 200 and upright[-10:].mean() < 50


@pytest.mark.parametrize("mode, ok", [("L", True), ("P", True), ("CMYK", True), ("1", True), ("LA", True),
                                      ("RGBA-transparent", False), ("F", False)])
def test_image_modes(mode, ok):
    if mode == "RGBA-transparent":
        img = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    elif mode == "LA":
        img = Image.new("LA", (8, 8), (128, 255))
    else:
        img = Image.new(mode, (8, 8))
    if ok:
        assert to_rgb(img).mode == "RGB"
    else:
        with pytest.raises(ValueError, match="transparent|range is unknown"):
            to_rgb(img)


def test_a_transparent_frame_is_listed_as_failed_with_its_reason(small_root, tmp_path):
    frame = sorted((small_root / "Real_youtube").rglob("*.png"))[0]
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(frame)
    assert extract(small_root, tmp_path / "c.h5") == 0
    failed = read_cache(tmp_path / "c.h5").failed
    rel = str(frame.relative_to(small_root))
    assert failed.set_index("path").loc[rel, "reason"].startswith("ValueError: 4096 transparent pixel(s)")
