"""Generated FaceForensics-shaped data set: the embedded default for demos and tests.

Real videos are rendered face-like scenes (textured background, skin-coloured face with a per-video
identity, small per-frame motion). Each manipulation rewrites the target video's frames with one LOCAL
artifact family. Sensor noise is drawn per (video, frame) and added after the manipulation, so a fake
shares its target frame's noise exactly: no global cue (size, format, brightness, noise) separates
classes, and `strength=0` makes every fake a byte-identical copy of its target frame.

    python -m clipforensics.synthetic --out data/synthetic
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from clipforensics.core.errors import UserError, cli_entry

REAL_CLASS = "Real_youtube"
DEFAULT_MANIPULATIONS = ("FaceSwap", "NeuralTextures", "Deepfakes", "Face2Face")
SUPPORTED_MANIPULATIONS = DEFAULT_MANIPULATIONS + ("FaceShifter",)
NOISE_SIGMA = 3.0
MIN_SIZE = 32
FACE_MARGIN = 3.0  # pixels around the face ellipse that artifacts (soft mask edges) may reach
SWAP_RADIUS = 0.8  # face-swap mask, in face radii: the seam lies inside the face, like a landmark hull
PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "optimize": False}  # noisy pixels: level 1 is fast, as small

# Independent random streams per video, so e.g. the face geometry never depends on the background.
_IDENTITY, _MOTION, _NOISE, _BACKGROUND, _PAIRING, _MANIPULATION = range(6)


@dataclass(frozen=True)
class Identity:
    """What makes one person: geometry in fractions of the image, features in face-local units."""

    cx: float
    cy: float
    rx: float
    ry: float
    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    eye_dx: float
    eye_y: float
    eye_r: float
    mouth_y: float
    mouth_w: float
    mouth_h: float
    light: float
    texture: np.ndarray  # rows of (freq_u, freq_v, phase, amplitude)


@dataclass(frozen=True)
class Video:
    """One real video: identity, static background and per-frame face offsets in pixels."""

    identity: Identity
    background: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class Frame:
    """A pixel window (the whole image or the face box) in one face's local coordinates."""

    u: np.ndarray
    v: np.ndarray
    y: np.ndarray  # pixel-centre coordinates of the window in the full image
    x: np.ndarray
    box: tuple[slice, slice]
    px: float  # pixels per face-local unit (smaller face radius)


# ---------------------------------------------------------------- identities and scenes


def make_identity(seed: int, video: int) -> Identity:
    """Draw a per-video identity; faces are roughly centred, like FaceForensics face crops."""
    rng = np.random.default_rng([seed, video, _IDENTITY])
    rx = rng.uniform(0.22, 0.29)
    skin = np.array([rng.uniform(120, 235), 0.0, 0.0])
    skin[1] = skin[0] * rng.uniform(0.68, 0.86)
    skin[2] = skin[1] * rng.uniform(0.70, 0.92)
    n_tex = 8
    texture = np.column_stack([
        rng.uniform(-9, 9, n_tex), rng.uniform(-9, 9, n_tex),
        rng.uniform(0, 2 * np.pi, n_tex), rng.uniform(0.008, 0.025, n_tex),
    ])
    return Identity(
        cx=rng.uniform(0.45, 0.55), cy=rng.uniform(0.47, 0.56), rx=rx, ry=rx * rng.uniform(1.15, 1.4),
        skin=skin, hair=rng.uniform(10, 140) * rng.uniform(0.6, 1.0, 3), shirt=rng.uniform(20, 235, 3),
        iris=rng.uniform(20, 150, 3), lips=skin * rng.uniform(0.55, 0.8) * np.array([1.0, 0.75, 0.8]),
        eye_dx=rng.uniform(0.32, 0.45), eye_y=rng.uniform(-0.35, -0.2), eye_r=rng.uniform(0.09, 0.14),
        mouth_y=rng.uniform(0.4, 0.55), mouth_w=rng.uniform(0.22, 0.38), mouth_h=rng.uniform(0.06, 0.11),
        light=rng.uniform(-0.25, 0.25), texture=texture,
    )


def make_offsets(seed: int, video: int, frames: int, size: int) -> np.ndarray:
    """Per-frame (dx, dy) face jitter of a few pixels: a small random walk around the start."""
    rng = np.random.default_rng([seed, video, _MOTION])
    steps = rng.normal(0.0, 0.012 * size, (frames, 2))
    steps[0] = 0.0
    return np.clip(np.cumsum(steps, axis=0), -0.04 * size, 0.04 * size)


def make_background(seed: int, video: int, size: int) -> np.ndarray:
    """Static per-video background: smooth noise, a gradient or stripes in two random colours."""
    rng = np.random.default_rng([seed, video, _BACKGROUND])
    c1, c2 = rng.uniform(15, 240, (2, 3))
    kind = rng.integers(3)
    y, x = _grid(size)
    if kind == 0:
        coarse = rng.uniform(0, 1, (6, 6))
        t = _upsample_smooth(coarse, size)
    else:
        angle = rng.uniform(0, np.pi)
        ramp = (x * np.cos(angle) + y * np.sin(angle)) / size
        t = ramp - ramp.min() if kind == 1 else 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 9) * ramp)
        t = t / max(float(t.max()), 1e-6)
    return (c1 + (c2 - c1) * t[..., None]).astype(np.float32)


def make_video(seed: int, video: int, frames: int, size: int) -> Video:
    """Everything needed to render any frame of real video `video`."""
    return Video(make_identity(seed, video), make_background(seed, video, size),
                 make_offsets(seed, video, frames, size))


def face_box(seed: int, video: int, frame: int, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box around the face ellipse of one frame (x1, y1 exclusive).

    Every artifact of a fake made from this real frame lies in this box, give or take a soft mask edge.
    """
    ident = make_identity(seed, video)
    offset = make_offsets(seed, video, frame + 1, size)[frame]
    y0, y1, x0, x1 = _window(ident, offset, size, 1.0)
    return x0, y0, x1, y1


def pairs(videos: int, seed: int) -> list[tuple[int, int]]:
    """(target, source) for every real video, in swapped pairs as in FF++ (000_003 and 003_000).

    Videos are shuffled and paired two by two (three in a cycle when the count is odd), so no video
    is its own source and a pair's two real videos can share a split.
    """
    order = [int(v) for v in np.random.default_rng([seed, _PAIRING]).permutation(videos)]
    groups = [order[i:i + 2] for i in range(0, videos - 3 if videos % 2 else videos, 2)]
    if videos % 2:
        groups.append(order[-3:])
    return sorted((g[i], g[(i + 1) % len(g)]) for g in groups for i in range(len(g)))


# ---------------------------------------------------------------- rendering


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x)."""
    c = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(c, c, indexing="ij")
    return y, x


def _upsample_smooth(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a small grid to size x size."""
    n = coarse.shape[0]
    pos = np.linspace(0, n - 1, size)
    i0 = np.minimum(np.floor(pos).astype(int), n - 2)
    w = (pos - i0)[:, None]
    rows = coarse[i0] * (1 - w) + coarse[i0 + 1] * w
    return rows[:, i0] * (1 - w.T) + rows[:, i0 + 1] * w.T


def _window(ident: Identity, offset: np.ndarray, size: int, margin: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) bounding box of the face ellipse grown by `margin` pixels, clipped to the image."""
    cx, cy = ident.cx * size + float(offset[0]), ident.cy * size + float(offset[1])
    rx, ry = ident.rx * size + margin, ident.ry * size + margin
    return (max(0, int(np.floor(cy - ry))), min(size, int(np.ceil(cy + ry))),
            max(0, int(np.floor(cx - rx))), min(size, int(np.ceil(cx + rx))))


def frame_coords(ident: Identity, offset: np.ndarray, size: int, whole: bool = False) -> Frame:
    """Face-local coordinates over the face box (all artifacts live there), or the whole image."""
    y0, y1, x0, x1 = (0, size, 0, size) if whole else _window(ident, offset, size, FACE_MARGIN)
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5
    y, x = np.meshgrid(ys, xs, indexing="ij")
    u = (x - (ident.cx * size + float(offset[0]))) / (ident.rx * size)
    v = (y - (ident.cy * size + float(offset[1]))) / (ident.ry * size)
    return Frame(u, v, y, x, (slice(y0, y1), slice(x0, x1)), min(ident.rx, ident.ry) * size)


def _mean_matched(old: np.ndarray, new: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shift `new` per channel so the `weight`-ed change has zero mean: artifacts never tint brightness."""
    w = weight[..., None]
    shift = (w * (old - new)).sum(axis=(0, 1)) / max(float(weight.sum()), 1e-6)
    return new + shift.astype(np.float32)


def _paste(img: np.ndarray, fr: Frame, window: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy of `img` with `window` blended into the frame's box through `mask`."""
    out = img.copy()
    old = img[fr.box]
    out[fr.box] = old + (window - old) * mask[..., None]
    return out


def _disk(fr: Frame, cu: float, cv: float, ru: float, rv: float, feather: float = 1.0) -> np.ndarray:
    """Soft ellipse mask in face-local units; `feather` is the edge width in pixels."""
    r = np.sqrt(((fr.u - cu) / ru) ** 2 + ((fr.v - cv) / rv) ** 2)
    return np.clip((1.0 - r) * min(ru, rv) * fr.px / feather + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray | float) -> np.ndarray:
    return img + (np.asarray(colour, np.float32) - img) * mask[..., None]


def _skin(ident: Identity, fr: Frame) -> np.ndarray:
    """Skin colour with lighting, a nose shadow and a per-identity fine texture."""
    tex = np.zeros_like(fr.u)
    for fu, fv, phase, amp in ident.texture.tolist():
        tex += amp * np.sin(2 * np.pi * (fu * fr.u + fv * fr.v) + phase)
    shade = 1.0 + ident.light * fr.u - 0.08 * (fr.u**2 + fr.v**2) + tex
    shade -= 0.08 * _disk(fr, 0.0, 0.12, 0.08, 0.22, 2.0)
    return ident.skin.astype(np.float32) * shade[..., None]


def face_layer(ident: Identity, fr: Frame) -> np.ndarray:
    """The face interior (skin, brows, eyes, mouth) over the frame's window; the caller masks it."""
    img = _skin(ident, fr)
    for side in (-1.0, 1.0):
        eu = side * ident.eye_dx
        img = _paint(img, _disk(fr, eu, ident.eye_y - 2.3 * ident.eye_r, 1.8 * ident.eye_r, 0.4 * ident.eye_r),
                     ident.hair)
        img = _paint(img, _disk(fr, eu, ident.eye_y, 1.7 * ident.eye_r, ident.eye_r), 235.0)
        img = _paint(img, _disk(fr, eu, ident.eye_y, 0.75 * ident.eye_r, 0.85 * ident.eye_r), ident.iris)
        img = _paint(img, _disk(fr, eu, ident.eye_y, 0.3 * ident.eye_r, 0.35 * ident.eye_r), 12.0)
    img = _paint(img, _disk(fr, 0.0, ident.mouth_y, ident.mouth_w, ident.mouth_h), ident.lips)
    line = _disk(fr, 0.0, ident.mouth_y, 0.85 * ident.mouth_w, 0.22 * ident.mouth_h, 0.7)
    return _paint(img, line, ident.lips * 0.35)


def render(video: Video, frame: int, size: int) -> np.ndarray:
    """Noise-free float image (H, W, 3) of one real frame."""
    ident, offset = video.identity, video.offsets[frame]
    whole = frame_coords(ident, offset, size, whole=True)
    img = _paint(video.background, _disk(whole, 0.0, 2.1, 2.0, 1.2, 1.5), ident.shirt)
    img = _paint(img, _disk(whole, 0.0, -0.22, 1.12, 1.0, 1.5), ident.hair)
    fr = frame_coords(ident, offset, size)
    return _paste(img, fr, face_layer(ident, fr), _disk(fr, 0.0, 0.0, 1.0, 1.0))


def add_noise(img: np.ndarray, seed: int, video: int, frame: int) -> np.ndarray:
    """Sensor noise of (video, frame), shared by the real frame and every fake made from it."""
    rng = np.random.default_rng([seed, video, _NOISE, frame])
    noisy = img + NOISE_SIGMA * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- image operations


def _box_blur(img: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur with edge padding (cumulative sums, no loops over pixels)."""
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = img.shape[axis]
        hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lo = np.take(c, np.arange(n), axis=axis)
        img = ((hi - lo) / (2 * radius + 1)).astype(np.float32)
    return img


def _blocky(img: np.ndarray, factor: int) -> np.ndarray:
    """Block-average down-sampling then nearest up-sampling: a low-resolution face pasted back."""
    h, w = img.shape[:2]
    nh, nw = -(-h // factor), -(-w // factor)
    padded = np.pad(img, ((0, nh * factor - h), (0, nw * factor - w), (0, 0)), mode="edge")
    small = padded.reshape(nh, factor, nw, factor, 3).mean(axis=(1, 3))
    return np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)[:h, :w].astype(np.float32)


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample `img` at pixel-centre coordinates (ys, xs) with bilinear weights."""
    h, w = img.shape[:2]
    ys = np.clip(ys - 0.5, 0, h - 1)
    xs = np.clip(xs - 0.5, 0, w - 1)
    y0 = np.minimum(np.floor(ys).astype(np.intp), h - 2)
    x0 = np.minimum(np.floor(xs).astype(np.intp), w - 2)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    top = img[y0, x0] * (1 - wx) + img[y0, x0 + 1] * wx
    bottom = img[y0 + 1, x0] * (1 - wx) + img[y0 + 1, x0 + 1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


# ---------------------------------------------------------------- manipulations


@dataclass(frozen=True)
class Job:
    """Everything one manipulation needs to rewrite one target frame."""

    target: Video
    source: Video
    frame: int
    size: int
    rng: np.random.Generator  # fresh per frame from (manipulation, target, source): same choices every frame
    frame_rng: np.random.Generator  # per frame on top of that: expression changes


def _target_frame(job: Job) -> Frame:
    return frame_coords(job.target.identity, job.target.offsets[job.frame], job.size)


def _swapped_face(job: Job, fr: Frame) -> np.ndarray:
    """The source identity rendered inside the target's head geometry (position, size, shape)."""
    t = job.target.identity
    ident = dataclasses.replace(job.source.identity, cx=t.cx, cy=t.cy, rx=t.rx, ry=t.ry)
    return face_layer(ident, fr)


def face_swap(img: np.ndarray, job: Job) -> np.ndarray:
    """Source face with a colour mismatch, pasted through a narrow mask edge that leaves a seam ring."""
    fr = _target_frame(job)
    gain = job.rng.normal(1.0, 0.06, 3).astype(np.float32)
    out = _paste(img, fr, _swapped_face(job, fr) * gain, _disk(fr, 0.0, 0.0, SWAP_RADIUS, SWAP_RADIUS, 1.5))
    r_px = (SWAP_RADIUS - np.sqrt(fr.u**2 + fr.v**2)) * SWAP_RADIUS * fr.px
    seam = -r_px / 1.2 * np.exp(-0.5 * (r_px / 1.2) ** 2)  # bright just outside, dark just inside
    out[fr.box] *= 1.0 + 0.25 * seam[..., None]
    return out


def neural_textures(img: np.ndarray, job: Job) -> np.ndarray:
    """Mouth region re-rendered with low-detail texture (a soft blur inside a mouth-centred mask)."""
    t = job.target.identity
    fr = _target_frame(job)
    radius = max(1, round(job.size * job.rng.uniform(0.015, 0.025)))
    smooth = _box_blur(_box_blur(img[fr.box], radius), radius)
    mask = _disk(fr, 0.0, t.mouth_y, 1.6 * t.mouth_w, 2.8 * t.mouth_h, 3.0)
    return _paste(img, fr, _mean_matched(img[fr.box], smooth, mask), mask)


def deepfakes(img: np.ndarray, job: Job) -> np.ndarray:
    """Face region down-sampled then up-sampled: a blurry, blocky face inside a sharp frame."""
    fr = _target_frame(job)
    factor = max(2, round(job.size / 32))
    low = _box_blur(_blocky(img[fr.box], factor), max(1, factor // 4))
    mask = _disk(fr, 0.0, 0.0, 0.95, 0.95, 2.0)
    return _paste(img, fr, _mean_matched(img[fr.box], low, mask), mask)


def _bump(fr: Frame, cu: float, cv: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((fr.u - cu) ** 2 + (fr.v - cv) ** 2) / sigma**2)


def face2face(img: np.ndarray, job: Job) -> np.ndarray:
    """Expression transfer: a local displacement field opens/stretches the mouth and moves the eyes."""
    t = job.target.identity
    fr = _target_frame(job)
    sign = -0.6 if job.rng.random() < 0.5 else 1.0  # open or close: the lips' area, so brightness, is unbiased
    open_ = sign * (job.rng.uniform(0.25, 0.45) + job.frame_rng.uniform(0.0, 0.15))
    stretch = job.rng.uniform(-0.15, 0.15)
    shift_u, shift_v = (job.rng.uniform(-1.0, 1.0, 2) * 0.03 * job.size).tolist()
    mouth = _bump(fr, 0.0, t.mouth_y, 1.2 * t.mouth_w)
    dv = open_ * (fr.v - t.mouth_y) * mouth * t.ry * job.size
    du = stretch * fr.u * mouth * t.rx * job.size
    for side in (-1.0, 1.0):
        eye = _bump(fr, side * t.eye_dx, t.eye_y, 2.0 * t.eye_r)
        du = du + shift_u * eye
        dv = dv + 0.5 * shift_v * eye
    inside = _disk(fr, 0.0, 0.0, 0.92, 0.92, 3.0)
    old = img[fr.box]
    warped = _bilinear(img, fr.y - dv * inside, fr.x - du * inside)
    shift = _mean_matched(old, warped, inside) - warped
    out = img.copy()
    out[fr.box] = warped + shift * inside[..., None]
    return out


def face_shifter(img: np.ndarray, job: Job) -> np.ndarray:
    """Colour-matched source face, sharply blended, with high-frequency blending noise."""
    fr = _target_frame(job)
    match = (job.target.identity.skin / job.source.identity.skin).astype(np.float32)
    checker = np.where((np.floor(fr.x) + np.floor(fr.y)) % 2 == 0, 6.0, -6.0).astype(np.float32)
    face = _swapped_face(job, fr) * match + checker[..., None]
    return _paste(img, fr, face, _disk(fr, 0.0, 0.0, 0.9, 0.9, 0.7))


MANIPULATORS: dict[str, Callable[[np.ndarray, Job], np.ndarray]] = {
    "FaceSwap": face_swap,
    "NeuralTextures": neural_textures,
    "Deepfakes": deepfakes,
    "Face2Face": face2face,
    "FaceShifter": face_shifter,
}


def manipulate(name: str, img: np.ndarray, job: Job, strength: float) -> np.ndarray:
    """Target frame plus `strength` times the artifact; strength 0 returns the frame unchanged."""
    if strength == 0:
        return img
    return np.clip(img + strength * (MANIPULATORS[name](img, job) - img), 0.0, 255.0)


# ---------------------------------------------------------------- writing the tree


@dataclass(frozen=True)
class Plan:
    """Validated settings of one generation."""

    videos: int
    frames: int
    size: int
    manipulations: tuple[str, ...]
    strength: float
    seed: int

    def video_id(self, index: int) -> str:
        return f"{index:0{max(3, len(str(self.videos - 1)))}d}"

    def frame_name(self, index: int) -> str:
        return f"{index:0{max(3, len(str(self.frames - 1)))}d}.png"


def _validate(videos: int, frames: int, size: int, manipulations: Sequence[str], strength: float,
              seed: int) -> Plan:
    if videos < 2:
        raise UserError(f"--videos must be at least 2 (each fake needs a different source video), got {videos}")
    if frames < 1:
        raise UserError(f"--frames must be at least 1, got {frames}")
    if size < MIN_SIZE:
        raise UserError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if not np.isfinite(strength) or strength < 0:
        raise UserError(f"--strength must be a finite number >= 0, got {strength}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    names = _csv(manipulations) if isinstance(manipulations, str) else tuple(manipulations)
    if not names:
        raise UserError("--manipulations is empty; name at least one of " + ", ".join(SUPPORTED_MANIPULATIONS))
    unknown = [m for m in names if m not in MANIPULATORS]
    if unknown:
        raise UserError(f"unknown manipulation(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(SUPPORTED_MANIPULATIONS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--manipulations lists a name twice: {','.join(names)}")
    return Plan(videos, frames, size, names, float(strength), seed)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace it")


def _save(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels, "RGB").save(path, **PNG_OPTIONS)


def _write_video(root: Path, plan: Plan, videos: list[Video], target: int, sources: dict[int, int]) -> None:
    """All frames of one real video and of every fake made from it."""
    vid = plan.video_id(target)
    src = sources[target]
    folders = {REAL_CLASS: root / REAL_CLASS / vid}
    folders.update({m: root / m / f"{vid}_{plan.video_id(src)}" for m in plan.manipulations})
    for folder in folders.values():
        folder.mkdir(parents=True)
    for f in range(plan.frames):
        clean = render(videos[target], f, plan.size)
        name = plan.frame_name(f)
        _save(add_noise(clean, plan.seed, target, f), folders[REAL_CLASS] / name)
        for m in plan.manipulations:
            key = [plan.seed, _MANIPULATION, zlib.crc32(m.encode()), target, src]
            job = Job(videos[target], videos[src], f, plan.size,
                      np.random.default_rng(key), np.random.default_rng(key + [f]))
            fake = manipulate(m, clean, job, plan.strength)
            _save(add_noise(fake, plan.seed, target, f), folders[m] / name)


def _readme(plan: Plan, sources: dict[int, int]) -> str:
    pair_text = ", ".join(f"{plan.video_id(t)}_{plan.video_id(s)}" for t, s in sorted(sources.items()))
    return (
        "SYNTHETIC data set generated by clipforensics.synthetic; these are not real faces or real deepfakes.\n"
        "Layout: Real_youtube/<id>/<frame>.png and <Manipulation>/<target>_<source>/<frame>.png\n"
        f"videos={plan.videos} frames={plan.frames} size={plan.size} strength={plan.strength} seed={plan.seed}\n"
        f"manipulations={','.join(plan.manipulations)}\n"
        f"pairs (target_source)={pair_text}\n"
        "Fakes share their target frame's sensor noise (added after the manipulation);\n"
        "every artifact is local to the face.\n"
        f"Regenerate: python -m clipforensics.synthetic --out OUT --videos {plan.videos} --frames {plan.frames} "
        f"--size {plan.size} --manipulations {','.join(plan.manipulations)} --strength {plan.strength} "
        f"--seed {plan.seed}\n"
    )


def _install(tmp: Path, out: Path) -> None:
    """Move the finished tree onto `out`, replacing an old tree only once the new one is complete."""
    old = None
    if out.is_dir():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def generate(out: str | os.PathLike, *, videos: int = 24, frames: int = 8, size: int = 128,
             manipulations: Sequence[str] = DEFAULT_MANIPULATIONS, strength: float = 1.0, seed: int = 0,
             overwrite: bool = False) -> Path:
    """Write the data set to `out` (built in a temporary sibling, then renamed) and return `out`."""
    plan = _validate(videos, frames, size, manipulations, strength, seed)
    out = Path(out)
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        scenes = [make_video(seed, v, frames, size) for v in range(videos)]
        sources = dict(pairs(videos, seed))
        for target in range(videos):
            _write_video(tmp, plan, scenes, target, sources)
        (tmp / "README.txt").write_text(_readme(plan, sources), encoding="utf-8")
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


# ---------------------------------------------------------------- command line


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command line; kept apart from `main` so docs and tests can render `--help`."""
    parser = argparse.ArgumentParser(
        prog="python -m clipforensics.synthetic",
        description="Write a small synthetic FaceForensics-shaped data set (real videos plus locally "
                    "manipulated fakes), deterministic from --seed.",
    )
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="data root to create (refused if non-empty, see --overwrite)")
    parser.add_argument("--videos", type=int, metavar="N", default=24, help="number of real videos (default: 24)")
    parser.add_argument("--frames", type=int, metavar="N", default=8, help="frames per video (default: 8)")
    parser.add_argument("--size", type=int, metavar="PX", default=128,
                        help="square image side in pixels (default: 128)")
    parser.add_argument("--manipulations", type=_csv, metavar="NAMES", default=DEFAULT_MANIPULATIONS,
                        help="comma-separated list from " + ", ".join(SUPPORTED_MANIPULATIONS)
                        + " (default: " + ",".join(DEFAULT_MANIPULATIONS) + ")")
    parser.add_argument("--strength", type=float, metavar="X", default=1.0,
                        help="artifact strength multiplier; 0 makes fakes exact copies of their target "
                             "frames, to test for leakage (default: 1.0)")
    parser.add_argument("--seed", type=int, metavar="N", default=0,
                        help="random seed; the same seed and flags give byte-identical files (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = generate(args.out, videos=args.videos, frames=args.frames, size=args.size,
                    manipulations=args.manipulations, strength=args.strength, seed=args.seed,
                    overwrite=args.overwrite)
    n_fake = args.videos * args.frames * len(args.manipulations)
    print(f"wrote {args.videos * args.frames} real and {n_fake} fake frames to {root}")
    return 0

