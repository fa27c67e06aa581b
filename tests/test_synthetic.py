"""The generated data set: FaceForensics layout, determinism, no leakage, local artifacts, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipforensics.core.errors import UserError
from clipforensics.core.io import RECORD
from clipforensics.synthetic import scene
from clipforensics.synthetic import write as synthetic
from clipforensics.synthetic.__main__ import build_parser, main
from clipforensics.synthetic.manipulations import DEFAULT_MANIPULATIONS
from clipforensics.synthetic.write import REAL_CLASS, generate

SMALL = {"videos": 6, "frames": 3, "size": 64}
ALL = synthetic.SUPPORTED_MANIPULATIONS


def _pngs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


def _fake_and_real(root: Path, manipulation: str):
    """(fake frame, its target real frame, target index, frame index) for every fake frame."""
    for folder in sorted((root / manipulation).iterdir()):
        target = folder.name.split("_")[0]
        for fake in sorted(folder.glob("*.png")):
            yield _pixels(fake), _pixels(root / REAL_CLASS / target / fake.name), int(target), int(fake.stem)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "data", manipulations=ALL, **SMALL)


def test_layout_and_counts(tree: Path) -> None:
    real_ids = sorted(p.name for p in (tree / REAL_CLASS).iterdir())
    assert real_ids == [f"{i:03d}" for i in range(SMALL["videos"])]
    frames = [f"{i:03d}.png" for i in range(SMALL["frames"])]
    for vid in real_ids:
        assert sorted(p.name for p in (tree / REAL_CLASS / vid).iterdir()) == frames
    for manipulation in ALL:
        names = sorted(p.name for p in (tree / manipulation).iterdir())
        assert len(names) == SMALL["videos"]
        targets, sources = zip(*(name.split("_") for name in names))
        assert sorted(targets) == real_ids and sorted(sources) == real_ids
        assert all(t != s for t, s in zip(targets, sources))
        for name in names:
            assert sorted(p.name for p in (tree / manipulation / name).iterdir()) == frames
    assert sorted(p.name for p in tree.iterdir()) == sorted([RECORD, REAL_CLASS, "README.txt", *ALL])
    assert "SYNTHETIC" in (tree / "README.txt").read_text()


def test_same_format_and_size_for_every_class(tree: Path) -> None:
    for path in tree.rglob("*.png"):
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (SMALL["size"], SMALL["size"]))


def test_pairs_are_a_derangement() -> None:
    for n in (2, 3, 10, 24):
        pairs = synthetic.pairs(n, seed=5)
        assert sorted(t for t, _ in pairs) == list(range(n))
        assert sorted(s for _, s in pairs) == list(range(n))
        assert all(t != s for t, s in pairs)
        if n % 2 == 0:
            assert {(s, t) for t, s in pairs} == set(pairs), "FF++-style swapped pairs"


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _pngs(generate(tmp_path / "a", seed=3, **SMALL))
    b = _pngs(generate(tmp_path / "b", seed=3, **SMALL))
    c = _pngs(generate(tmp_path / "c", seed=4, **SMALL))
    assert a == b
    assert sum(a[k] != c.get(k) for k in a) > len(a) // 2


def test_strength_zero_fakes_equal_their_target_frames(tmp_path: Path) -> None:
    root = generate(tmp_path / "zero", strength=0.0, manipulations=ALL, **SMALL)
    for manipulation in ALL:
        for fake, real, _, _ in _fake_and_real(root, manipulation):
            np.testing.assert_array_equal(fake, real)


def test_real_frames_do_not_depend_on_manipulations_or_strength(tmp_path: Path, tree: Path) -> None:
    other = generate(tmp_path / "other", manipulations=("Deepfakes",), strength=2.0, **SMALL)
    assert {k: v for k, v in _pngs(other).items() if k.startswith(REAL_CLASS)} == \
        {k: v for k, v in _pngs(tree).items() if k.startswith(REAL_CLASS)}


@pytest.mark.parametrize("manipulation", ALL)
def test_artifact_is_local_to_the_face(tree: Path, manipulation: str) -> None:
    changed = 0
    for fake, real, target, frame in _fake_and_real(tree, manipulation):
        diff = np.abs(fake - real).sum(axis=-1)
        x0, y0, x1, y1 = scene.face_box(0, target, frame, SMALL["size"])
        assert diff.sum() > 0
        assert diff[y0:y1, x0:x1].sum() / diff.sum() > 0.8
        changed += 1
    assert changed == SMALL["videos"] * SMALL["frames"]


@pytest.mark.parametrize("manipulation", ALL)
def test_fakes_are_not_brighter_or_darker_than_reals(tree: Path, manipulation: str) -> None:
    gaps = [fake.mean() - real.mean() for fake, real, _, _ in _fake_and_real(tree, manipulation)]
    assert abs(np.mean(gaps)) < 2.0  # grey levels out of 255


def test_fakes_keep_the_sensor_noise_of_their_target(tree: Path) -> None:
    """Away from the face a fake equals its target frame exactly: same noise, not a cleaner copy."""
    for manipulation in ALL:
        for fake, real, target, frame in _fake_and_real(tree, manipulation):
            x0, y0, x1, y1 = scene.face_box(0, target, frame, SMALL["size"])
            outside = np.ones(fake.shape[:2], bool)
            outside[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = False
            np.testing.assert_array_equal(fake[outside], real[outside])


def _abs_laplacian(img: np.ndarray) -> np.ndarray:
    return np.abs(img[1:-1, 1:-1] - (img[:-2, 1:-1] + img[2:, 1:-1] + img[1:-1, :-2] + img[1:-1, 2:]) / 4)


@pytest.mark.parametrize("manipulation", ALL)
def test_fake_faces_are_not_cleaner_than_sensor_noise(tree: Path, manipulation: str) -> None:
    """Noise comes after the manipulation, so even a blurred face keeps the camera's noise level."""
    floor = 0.6745 * scene.NOISE_SIGMA * np.sqrt(1 + 4 / 16)  # median |laplacian| of the noise alone
    for fake, _, target, frame in _fake_and_real(tree, manipulation):
        x0, y0, x1, y1 = scene.face_box(0, target, frame, SMALL["size"])
        assert np.median(_abs_laplacian(fake[y0:y1, x0:x1])) > 0.9 * floor


def test_strength_scales_the_artifact(tmp_path: Path) -> None:
    def mean_change(strength: float) -> float:
        root = generate(tmp_path / f"s{strength}", strength=strength, manipulations=("FaceSwap",), **SMALL)
        return float(np.mean([np.abs(f - r).mean() for f, r, _, _ in _fake_and_real(root, "FaceSwap")]))

    assert 0 < mean_change(0.5) < mean_change(1.0)


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    for bad in ({"videos": 1}, {"frames": 0}, {"size": 8}, {"strength": -1.0},
                {"manipulations": ("FaceSwap", "Nope")}, {"manipulations": ()},
                {"manipulations": ("FaceSwap", "FaceSwap")}):
        with pytest.raises(UserError):
            generate(tmp_path / "bad", **{**SMALL, **bad})
    assert not (tmp_path / "bad").exists()


def test_cli_writes_tree_and_refuses_non_empty_out(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["--out", str(out), "--videos", "3", "--frames-per-video", "2", "--size", "48",
            "--manipulations", "FaceSwap,Face2Face"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "Face2Face", "FaceSwap", "README.txt", REAL_CLASS]
    assert len(list(out.rglob("*.png"))) == 3 * 2 * 3
    before = _pngs(out)

    assert main(args + ["--data-seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _pngs(out) == before

    assert main(args + ["--data-seed", "1", "--overwrite"]) == 0
    assert _pngs(out) != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_defaults_match_the_api() -> None:
    args = build_parser().parse_args(["--out", "x"])
    settings = (args.videos, args.frames, args.size, args.strength, args.seed, args.overwrite)
    assert settings == (24, 8, 128, 1.0, 0, False)
    assert tuple(args.manipulations) == DEFAULT_MANIPULATIONS


def test_failed_generation_leaves_no_tree(tmp_path: Path, monkeypatch) -> None:
    def boom(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_readme", boom)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "crash", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_styles_are_a_registry(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown style 'celebdf-nope'; choose from ffpp"):
        generate(tmp_path / "x", style="celebdf-nope", **SMALL)
    assert not (tmp_path / "x").exists()
    assert synthetic.STYLES.get("ffpp").fake_folder(synthetic.SyntheticSettings(out="o"), "FaceSwap", 3, 12) == \
        "FaceSwap/003_012"
