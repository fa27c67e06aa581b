"""The generated second data set: Celeb-DF v2's layout and test list, and a domain shift from the FF-style set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipforensics.data.layouts import resolve, scan
from clipforensics.data.layouts.celebdf import read_celebdf_list
from clipforensics.data.manifest import OFFICIAL_SPLIT, ManifestSettings
from clipforensics.synthetic.scene import FACE_MARGIN, face_box
from clipforensics.synthetic.write import generate

SIZE = 128  # rendered at 64 px, upscaled 2x


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("styles")
    options = dict(videos=12, frames=2, size=SIZE, seed=3)
    return generate(base / "ff", **options), generate(base / "cdf", style="celebdf", **options)


def test_celebdf_style_is_read_as_celebdf_with_its_test_list(both) -> None:
    _, cdf = both
    assert resolve(cdf, "auto").name == "celebdf"
    listed = read_celebdf_list(cdf / "List_of_testing_videos.txt")
    assert set(listed.values()) == {0, 1}
    manifest = scan(ManifestSettings(data_root=str(cdf)))
    videos = manifest.drop_duplicates("video").set_index("video")
    assert set(videos["manipulation"]) == {"Celeb-real", "YouTube-real", "Celeb-synthesis"}
    assert (videos.loc[videos["manipulation"] == "Celeb-synthesis", "label"] == 1).all()
    tested = set(videos.index[videos[OFFICIAL_SPLIT] == "test"])
    assert tested == {path[: -len(".mp4")] for path in listed}
    fakes = videos[videos["label"] == 1]
    assert set(fakes["target"]) <= {v.split("/")[1] for v in videos.index[videos["manipulation"] == "Celeb-real"]}


def test_celebdf_style_is_deterministic(both, tmp_path) -> None:
    _, cdf = both
    again = generate(tmp_path / "again", videos=12, frames=2, size=SIZE, seed=3, style="celebdf")
    files = sorted(p.relative_to(cdf) for p in cdf.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((cdf / f).read_bytes() == (again / f).read_bytes() for f in files)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def test_visible_domain_shift(both) -> None:
    """Same scenes, another data set: JPEG instead of PNG, darker and warmer, softer (less fine detail)."""
    ff, cdf = both
    real_ff = [_pixels(p) for p in sorted((ff / "Real_youtube").rglob("*.png"))]
    real_cdf = [_pixels(p) for p in sorted(cdf.glob("*-real/*/*.jpg"))]
    assert real_ff and real_cdf and not list(cdf.rglob("*.png"))
    assert all(Image.open(p).format == "JPEG" for p in cdf.glob("Celeb-real/*/*.jpg"))
    mean_ff, mean_cdf = np.mean(real_ff, axis=(0, 1, 2)), np.mean(real_cdf, axis=(0, 1, 2))
    assert mean_cdf.sum() < mean_ff.sum() - 30, "darker"
    assert mean_cdf[0] / mean_cdf[2] > mean_ff[0] / mean_ff[2] * 0.9 or mean_cdf[0] > mean_cdf[2], "warm cast"

    def detail(images: list[np.ndarray]) -> float:  # mean absolute difference of horizontal neighbours
        return float(np.mean([np.abs(np.diff(img, axis=1)).mean() for img in images]))

    assert detail(real_cdf) < 0.7 * detail(real_ff), "rendered at half size and upscaled"


def test_fakes_differ_from_their_real_frame_around_the_face(both) -> None:
    """The artifact stays local through the shift: outside the JPEG blocks (16 px with chroma subsampling) that
    touch the face box (grown by its soft mask edge, both upscaled, and the 2 px the upscaling blurs), fake and
    real frames decode to the same pixels up to the decoder's chroma interpolation across block edges."""
    _, cdf = both
    for fake_dir in sorted((cdf / "Celeb-synthesis").iterdir()):
        target = int(fake_dir.name.split("_")[0][2:])
        real_dir = cdf / "Celeb-real" / f"id{target}_0000"
        for frame in sorted(fake_dir.glob("*.jpg")):
            diff = np.abs(_pixels(frame) - _pixels(real_dir / frame.name)).sum(axis=2)
            x0, y0, x1, y1 = (v * 2 for v in face_box(3, target, int(frame.stem), SIZE // 2))
            grow = int(2 * FACE_MARGIN) + 2
            top, left = max(0, y0 - grow) // 16 * 16, max(0, x0 - grow) // 16 * 16
            bottom, right = -(-(y1 + grow) // 16) * 16, -(-(x1 + grow) // 16) * 16
            inside = np.zeros(diff.shape, bool)
            inside[top:bottom, left:right] = True
            near = np.zeros(diff.shape, bool)  # the decoder interpolates chroma 1 px across block edges
            near[max(0, top - 2):bottom + 2, max(0, left - 2):right + 2] = True
            assert diff[inside].mean() > 5 and diff[~near].max() == 0
