"""Generated FaceForensics-shaped data set: the embedded default for demos and tests.

Real videos are rendered face-like scenes (`scene`: textured background, skin-coloured face with a
per-video identity, small per-frame motion). Each manipulation (`manipulations`) rewrites the target
video's frames with one LOCAL artifact family. Sensor noise is drawn per (video, frame) and added after
the manipulation, so a fake shares its target frame's noise exactly: no global cue (size, format,
brightness, noise) separates classes, and `strength=0` makes every fake a byte-identical copy of its
target frame. This module plans a generation (settings, source pairs, folder style) and writes it.

    python -m clipforensics.synthetic --out data/synthetic
    generate("data/synthetic", videos=24)      # the same from Python: keywords as in SyntheticSettings
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, claim_output, install_dir, remove_stale_temps, temp_sibling
from clipforensics.core.registry import Registry
from clipforensics.core.settings import option, split_csv
from clipforensics.synthetic import celebdf, celebdfpp, df40, dfd
from clipforensics.synthetic.manipulations import (DEFAULT_MANIPULATIONS, MANIPULATORS, SUPPORTED_MANIPULATIONS,
                                                   make_job, manipulate)
from clipforensics.synthetic.scene import RNG_PAIRING, Video, add_noise, make_video, render

REAL_CLASS = "Real_youtube"
MIN_SIZE = 32
PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "optimize": False}  # noisy pixels: level 1 is fast, as small


@dataclass(frozen=True)
class Style:
    """How a generated data root is laid out: the folder (relative to the root) of each real video and
    of each fake, and README.txt's layout line. A new style is one `STYLES.register(name, Style(...))`;
    a style that is another data set altogether (other folders, label files, a domain shift) brings its
    own `writer` (root, settings, pairing -> README description) instead of the two folder rules."""

    layout: str
    real_folder: Callable[["SyntheticSettings", int], str] | None = None
    fake_folder: Callable[["SyntheticSettings", str, int, int], str] | None = None  # (settings, manipulation, target, source)
    writer: Callable[[Path, "SyntheticSettings", Callable[[int, int], list[tuple[int, int]]]], str] | None = None


STYLES: Registry[Style] = Registry("style")
STYLES.register("ffpp", Style(
    layout="Real_youtube/<id>/<frame>.png and <Manipulation>/<target>_<source>/<frame>.png",
    real_folder=lambda s, target: f"{REAL_CLASS}/{s.video_id(target)}",
    fake_folder=lambda s, name, target, source: f"{name}/{s.video_id(target)}_{s.video_id(source)}"))
STYLES.register("celebdf", Style(layout=celebdf.LAYOUT, writer=celebdf.write_celebdf))
STYLES.register("celebdfpp", Style(layout=celebdfpp.LAYOUT, writer=celebdfpp.write_celebdfpp))
STYLES.register("dfd", Style(layout=dfd.LAYOUT, real_folder=dfd.real_folder, fake_folder=dfd.fake_folder))
STYLES.register("df40", Style(layout=df40.LAYOUT, real_folder=df40.real_folder, fake_folder=df40.fake_folder))
DEFAULT_STYLE = "ffpp"


@dataclass
class SyntheticSettings:
    """One generation: the options of `python -m clipforensics.synthetic` and the keywords of `generate`."""

    out: str = option(None, "data root to create (refused if non-empty, see --overwrite)", required=True,
                      metavar="DIR")
    videos: int = option(24, "number of real videos", metavar="N")
    frames: int = option(8, "frames per video", metavar="N", flag="--frames-per-video", formerly="--frames")
    size: int = option(128, "square image side in pixels", metavar="PX")
    manipulations: tuple[str, ...] = option(DEFAULT_MANIPULATIONS, "comma-separated list from "
                                            + ", ".join(SUPPORTED_MANIPULATIONS), metavar="NAMES")
    strength: float = option(1.0, "artifact strength multiplier; 0 makes fakes exact copies of their target "
                                  "frames, to test for leakage", metavar="X")
    seed: int = option(0, "seed of the generated data; the same seed and flags give byte-identical files",
                       metavar="N", flag="--data-seed", formerly="--seed")
    style: str = option(DEFAULT_STYLE, "folder layout: " + ", ".join(STYLES), metavar="NAME")
    overwrite: bool = option(False, "replace an existing non-empty --out")

    def __post_init__(self) -> None:
        if self.videos < 2:
            raise UserError(f"--videos must be at least 2 (each fake needs a different source video), "
                            f"got {self.videos}")
        if self.frames < 1:
            raise UserError(f"--frames-per-video must be at least 1, got {self.frames}")
        if self.size < MIN_SIZE:
            raise UserError(f"--size must be at least {MIN_SIZE} pixels, got {self.size}")
        if not np.isfinite(self.strength) or self.strength < 0:
            raise UserError(f"--strength must be a finite number >= 0, got {self.strength}")
        if self.seed < 0:
            raise UserError(f"--data-seed must be >= 0, got {self.seed}")
        names = self.manipulations
        names = split_csv(names) if isinstance(names, str) else tuple(names)
        if not names:
            raise UserError("--manipulations is empty; name at least one of " + ", ".join(SUPPORTED_MANIPULATIONS))
        unknown = [m for m in names if m not in MANIPULATORS]
        if unknown:
            raise UserError(f"unknown manipulation(s) {', '.join(unknown)}; "
                            f"choose from {', '.join(SUPPORTED_MANIPULATIONS)}")
        if len(set(names)) != len(names):
            raise UserError(f"--manipulations lists a name twice: {','.join(names)}")
        STYLES.get(self.style)
        self.manipulations, self.strength = names, float(self.strength)

    def video_id(self, index: int) -> str:
        return f"{index:0{max(3, len(str(self.videos - 1)))}d}"

    def frame_name(self, index: int) -> str:
        return f"{index:0{max(3, len(str(self.frames - 1)))}d}.png"


def pairs(videos: int, seed: int) -> list[tuple[int, int]]:
    """(target, source) for every real video, in swapped pairs as in FF++ (000_003 and 003_000).

    Videos are shuffled and paired two by two (three in a cycle when the count is odd), so no video
    is its own source and a pair's two real videos can share a split.
    """
    order = [int(v) for v in np.random.default_rng([seed, RNG_PAIRING]).permutation(videos)]
    groups = [order[i:i + 2] for i in range(0, videos - 3 if videos % 2 else videos, 2)]
    if videos % 2:
        groups.append(order[-3:])
    return sorted((g[i], g[(i + 1) % len(g)]) for g in groups for i in range(len(g)))


STAGE = "synthetic"


def _check_out(out: Path, overwrite: bool) -> None:
    """A new or empty folder, or a data set this generator wrote (replaced whole, so only with --overwrite
    and only when nothing else was put into it); never a folder of anyone else's files."""
    owned = claim_output(out, stage=STAGE)
    if owned.entries and not overwrite:
        raise UserError(f"--out {out} already holds a generated data set; pass --overwrite to replace it")
    foreign = owned.foreign()
    if foreign:
        raise UserError(f"--out {out} holds files the generator did not write ({', '.join(p.name for p in foreign[:3])}"
                        "); move them away first: --overwrite replaces the whole folder")


def _save(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels, "RGB").save(path, **PNG_OPTIONS)


def _write_video(root: Path, settings: SyntheticSettings, videos: list[Video], target: int,
                 sources: dict[int, int]) -> None:
    """All frames of one real video and of every fake made from it."""
    style, src = STYLES.get(settings.style), sources[target]
    folders = {REAL_CLASS: root / style.real_folder(settings, target)}
    folders.update({m: root / style.fake_folder(settings, m, target, src) for m in settings.manipulations})
    for folder in folders.values():
        folder.mkdir(parents=True)
    for f in range(settings.frames):
        clean = render(videos[target], f, settings.size)
        name = settings.frame_name(f)
        _save(add_noise(clean, settings.seed, target, f), folders[REAL_CLASS] / name)
        for m in settings.manipulations:
            fake = manipulate(m, clean, make_job(m, settings.seed, videos, target, src, f, settings.size),
                              settings.strength)
            _save(add_noise(fake, settings.seed, target, f), folders[m] / name)


def _pairs_text(settings: SyntheticSettings, sources: dict[int, int]) -> str:
    pair_text = ", ".join(f"{settings.video_id(t)}_{settings.video_id(v)}" for t, v in sorted(sources.items()))
    return (f"pairs (target_source)={pair_text}\n"
            "Fakes share their target frame's sensor noise (added after the manipulation);\n"
            "every artifact is local to the face.\n")


def _readme(settings: SyntheticSettings, details: str) -> str:
    s = settings
    style = "" if s.style == DEFAULT_STYLE else f" --style {s.style}"
    return (
        "SYNTHETIC data set generated by clipforensics.synthetic; these are not real faces or real deepfakes.\n"
        f"Layout: {STYLES.get(s.style).layout}\n"
        f"videos={s.videos} frames={s.frames} size={s.size} strength={s.strength} seed={s.seed}\n"
        f"manipulations={','.join(s.manipulations)}\n"
        f"{details}"
        f"Regenerate: python -m clipforensics.synthetic --out OUT --videos {s.videos} --frames {s.frames} "
        f"--size {s.size} --manipulations {','.join(s.manipulations)} --strength {s.strength} "
        f"--seed {s.seed}{style}\n"
    )


def write(settings: SyntheticSettings) -> Path:
    """Write the data set (built in a temporary sibling, renamed into place when complete); return its root."""
    out = Path(settings.out)
    _check_out(out, settings.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent)
    tmp = temp_sibling(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        style = STYLES.get(settings.style)
        if style.writer is not None:
            details = style.writer(tmp, settings, pairs)
        else:
            scenes = [make_video(settings.seed, v, settings.frames, settings.size) for v in range(settings.videos)]
            sources = dict(pairs(settings.videos, settings.seed))
            for target in range(settings.videos):
                _write_video(tmp, settings, scenes, target, sources)
            details = _pairs_text(settings, sources)
        (tmp / "README.txt").write_text(_readme(settings, details), encoding="utf-8")
        OutputDir.record_built(tmp, STAGE)
        install_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def generate(out: str | os.PathLike, **options: Any) -> Path:
    """Write the data set to `out` and return `out`; `options` are SyntheticSettings' fields (videos,
    frames, size, manipulations, strength, seed, style, overwrite), with its defaults."""
    return write(SyntheticSettings(out=str(out), **options))
