"""What a real video of the generated data set looks like: a per-video identity (face geometry,
skin, eyes, mouth, texture), a static background, small per-frame motion, and sensor noise.

Every random choice comes from its own stream keyed by (seed, video[, frame]), so e.g. the face
geometry never depends on the background, and any frame can be rendered alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_SIGMA = 3.0
FACE_MARGIN = 3.0  # pixels around the face ellipse that artifacts (soft mask edges) may reach

# The stream id in every seed key; pairing (write) and manipulation (manipulations) streams are numbered here
# too, so no two streams can ever share an id.
RNG_IDENTITY, RNG_MOTION, RNG_NOISE, RNG_BACKGROUND, RNG_PAIRING, RNG_MANIPULATION = range(6)


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
class FaceWindow:
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
    rng = np.random.default_rng([seed, video, RNG_IDENTITY])
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
    rng = np.random.default_rng([seed, video, RNG_MOTION])
    steps = rng.normal(0.0, 0.012 * size, (frames, 2))
    steps[0] = 0.0
    return np.clip(np.cumsum(steps, axis=0), -0.04 * size, 0.04 * size)


def make_background(seed: int, video: int, size: int) -> np.ndarray:
    """Static per-video background: smooth noise, a gradient or stripes in two random colours."""
    rng = np.random.default_rng([seed, video, RNG_BACKGROUND])
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


def frame_coords(ident: Identity, offset: np.ndarray, size: int, whole: bool = False) -> FaceWindow:
    """Face-local coordinates over the face box (all artifacts live there), or the whole image."""
    y0, y1, x0, x1 = (0, size, 0, size) if whole else _window(ident, offset, size, FACE_MARGIN)
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5
    y, x = np.meshgrid(ys, xs, indexing="ij")
    u = (x - (ident.cx * size + float(offset[0]))) / (ident.rx * size)
    v = (y - (ident.cy * size + float(offset[1]))) / (ident.ry * size)
    return FaceWindow(u, v, y, x, (slice(y0, y1), slice(x0, x1)), min(ident.rx, ident.ry) * size)


def paste(img: np.ndarray, fr: FaceWindow, window: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy of `img` with `window` blended into the frame's box through `mask`."""
    out = img.copy()
    old = img[fr.box]
    out[fr.box] = old + (window - old) * mask[..., None]
    return out


def disk(fr: FaceWindow, cu: float, cv: float, ru: float, rv: float, feather: float = 1.0) -> np.ndarray:
    """Soft ellipse mask in face-local units; `feather` is the edge width in pixels."""
    r = np.sqrt(((fr.u - cu) / ru) ** 2 + ((fr.v - cv) / rv) ** 2)
    return np.clip((1.0 - r) * min(ru, rv) * fr.px / feather + 0.5, 0.0, 1.0)


def paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray | float) -> np.ndarray:
    return img + (np.asarray(colour, np.float32) - img) * mask[..., None]


def _skin(ident: Identity, fr: FaceWindow) -> np.ndarray:
    """Skin colour with lighting, a nose shadow and a per-identity fine texture."""
    tex = np.zeros_like(fr.u)
    for fu, fv, phase, amp in ident.texture.tolist():
        tex += amp * np.sin(2 * np.pi * (fu * fr.u + fv * fr.v) + phase)
    shade = 1.0 + ident.light * fr.u - 0.08 * (fr.u**2 + fr.v**2) + tex
    shade -= 0.08 * disk(fr, 0.0, 0.12, 0.08, 0.22, 2.0)
    return ident.skin.astype(np.float32) * shade[..., None]


def face_layer(ident: Identity, fr: FaceWindow) -> np.ndarray:
    """The face interior (skin, brows, eyes, mouth) over the frame's window; the caller masks it."""
    img = _skin(ident, fr)
    for side in (-1.0, 1.0):
        eu = side * ident.eye_dx
        img = paint(img, disk(fr, eu, ident.eye_y - 2.3 * ident.eye_r, 1.8 * ident.eye_r, 0.4 * ident.eye_r),
                     ident.hair)
        img = paint(img, disk(fr, eu, ident.eye_y, 1.7 * ident.eye_r, ident.eye_r), 235.0)
        img = paint(img, disk(fr, eu, ident.eye_y, 0.75 * ident.eye_r, 0.85 * ident.eye_r), ident.iris)
        img = paint(img, disk(fr, eu, ident.eye_y, 0.3 * ident.eye_r, 0.35 * ident.eye_r), 12.0)
    img = paint(img, disk(fr, 0.0, ident.mouth_y, ident.mouth_w, ident.mouth_h), ident.lips)
    line = disk(fr, 0.0, ident.mouth_y, 0.85 * ident.mouth_w, 0.22 * ident.mouth_h, 0.7)
    return paint(img, line, ident.lips * 0.35)


def render(video: Video, frame: int, size: int) -> np.ndarray:
    """Noise-free float image (H, W, 3) of one real frame."""
    ident, offset = video.identity, video.offsets[frame]
    whole = frame_coords(ident, offset, size, whole=True)
    img = paint(video.background, disk(whole, 0.0, 2.1, 2.0, 1.2, 1.5), ident.shirt)
    img = paint(img, disk(whole, 0.0, -0.22, 1.12, 1.0, 1.5), ident.hair)
    fr = frame_coords(ident, offset, size)
    return paste(img, fr, face_layer(ident, fr), disk(fr, 0.0, 0.0, 1.0, 1.0))


def add_noise(img: np.ndarray, seed: int, video: int, frame: int) -> np.ndarray:
    """Sensor noise of (video, frame), shared by the real frame and every fake made from it."""
    rng = np.random.default_rng([seed, video, RNG_NOISE, frame])
    noisy = img + NOISE_SIGMA * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
