"""The fakes: each manipulation rewrites a target frame with one LOCAL artifact family, inside the
face box, never changing the frame's brightness, size or noise (noise is added after, shared with
the target frame). Manipulations are a registry: `@MANIPULATORS.register("Name")` on a function
`(clean target frame, ManipulationJob) -> rewritten frame` adds one.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from clipforensics.core.registry import Registry
from clipforensics.synthetic.scene import (RNG_MANIPULATION, FaceWindow, Video, disk, face_layer, frame_coords,
                                           paste)

SWAP_RADIUS = 0.8  # face-swap mask, in face radii: the seam lies inside the face, like a landmark hull

MANIPULATORS: Registry[Callable[[np.ndarray, "ManipulationJob"], np.ndarray]] = Registry("manipulation")


# ---------------------------------------------------------------- image operations


def _mean_matched(old: np.ndarray, new: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shift `new` per channel so the `weight`-ed change has zero mean: artifacts never tint brightness."""
    w = weight[..., None]
    shift = (w * (old - new)).sum(axis=(0, 1)) / max(float(weight.sum()), 1e-6)
    return new + shift.astype(np.float32)


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
class ManipulationJob:
    """Everything one manipulation needs to rewrite one target frame."""

    target: Video
    source: Video
    frame: int
    size: int
    rng: np.random.Generator  # fresh per frame from (manipulation, target, source): same choices every frame
    frame_rng: np.random.Generator  # per frame on top of that: expression changes


def make_job(name: str, seed: int, videos: list[Video], target: int, source: int, frame: int,
             size: int) -> ManipulationJob:
    """The job of manipulation `name` on one frame: its random choices are fixed per (name, target,
    source), so a fake video is consistent over its frames, plus a per-frame stream."""
    key = [seed, RNG_MANIPULATION, zlib.crc32(name.encode()), target, source]
    return ManipulationJob(videos[target], videos[source], frame, size,
                           np.random.default_rng(key), np.random.default_rng(key + [frame]))


def _target_frame(job: ManipulationJob) -> FaceWindow:
    return frame_coords(job.target.identity, job.target.offsets[job.frame], job.size)


def _swapped_face(job: ManipulationJob, fr: FaceWindow) -> np.ndarray:
    """The source identity rendered inside the target's head geometry (position, size, shape)."""
    t = job.target.identity
    ident = dataclasses.replace(job.source.identity, cx=t.cx, cy=t.cy, rx=t.rx, ry=t.ry)
    return face_layer(ident, fr)


@MANIPULATORS.register("FaceSwap")
def face_swap(img: np.ndarray, job: ManipulationJob) -> np.ndarray:
    """Source face with a colour mismatch, pasted through a narrow mask edge that leaves a seam ring."""
    fr = _target_frame(job)
    gain = job.rng.normal(1.0, 0.06, 3).astype(np.float32)
    out = paste(img, fr, _swapped_face(job, fr) * gain, disk(fr, 0.0, 0.0, SWAP_RADIUS, SWAP_RADIUS, 1.5))
    r_px = (SWAP_RADIUS - np.sqrt(fr.u**2 + fr.v**2)) * SWAP_RADIUS * fr.px
    seam = -r_px / 1.2 * np.exp(-0.5 * (r_px / 1.2) ** 2)  # bright just outside, dark just inside
    out[fr.box] *= 1.0 + 0.25 * seam[..., None]
    return out


@MANIPULATORS.register("NeuralTextures")
def neural_textures(img: np.ndarray, job: ManipulationJob) -> np.ndarray:
    """Mouth region re-rendered with low-detail texture (a soft blur inside a mouth-centred mask)."""
    t = job.target.identity
    fr = _target_frame(job)
    radius = max(1, round(job.size * job.rng.uniform(0.015, 0.025)))
    smooth = _box_blur(_box_blur(img[fr.box], radius), radius)
    mask = disk(fr, 0.0, t.mouth_y, 1.6 * t.mouth_w, 2.8 * t.mouth_h, 3.0)
    return paste(img, fr, _mean_matched(img[fr.box], smooth, mask), mask)


@MANIPULATORS.register("Deepfakes")
def deepfakes(img: np.ndarray, job: ManipulationJob) -> np.ndarray:
    """Face region down-sampled then up-sampled: a blurry, blocky face inside a sharp frame."""
    fr = _target_frame(job)
    factor = max(2, round(job.size / 32))
    low = _box_blur(_blocky(img[fr.box], factor), max(1, factor // 4))
    mask = disk(fr, 0.0, 0.0, 0.95, 0.95, 2.0)
    return paste(img, fr, _mean_matched(img[fr.box], low, mask), mask)


def _bump(fr: FaceWindow, cu: float, cv: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((fr.u - cu) ** 2 + (fr.v - cv) ** 2) / sigma**2)


@MANIPULATORS.register("Face2Face")
def face2face(img: np.ndarray, job: ManipulationJob) -> np.ndarray:
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
    inside = disk(fr, 0.0, 0.0, 0.92, 0.92, 3.0)
    old = img[fr.box]
    warped = _bilinear(img, fr.y - dv * inside, fr.x - du * inside)
    shift = _mean_matched(old, warped, inside) - warped
    out = img.copy()
    out[fr.box] = warped + shift * inside[..., None]
    return out


@MANIPULATORS.register("FaceShifter")
def face_shifter(img: np.ndarray, job: ManipulationJob) -> np.ndarray:
    """Colour-matched source face, sharply blended, with high-frequency blending noise."""
    fr = _target_frame(job)
    match = (job.target.identity.skin / job.source.identity.skin).astype(np.float32)
    checker = np.where((np.floor(fr.x) + np.floor(fr.y)) % 2 == 0, 6.0, -6.0).astype(np.float32)
    face = _swapped_face(job, fr) * match + checker[..., None]
    return paste(img, fr, face, disk(fr, 0.0, 0.0, 0.9, 0.9, 0.7))


DEFAULT_MANIPULATIONS = ("FaceSwap", "NeuralTextures", "Deepfakes", "Face2Face")
SUPPORTED_MANIPULATIONS = tuple(MANIPULATORS)


def manipulate(name: str, img: np.ndarray, job: ManipulationJob, strength: float) -> np.ndarray:
    """Target frame plus `strength` times the artifact; strength 0 returns the frame unchanged."""
    if strength == 0:
        return img
    return np.clip(img + strength * (MANIPULATORS.get(name)(img, job) - img), 0.0, 255.0)
