"""The generated data set in Celeb-DF v2's layout, with a visible domain shift from the FF-style set.

    python -m clipforensics.synthetic --style celebdf --out data/celebdf-synthetic

Folders as Celeb-DF v2 ships them: `Celeb-real/id<N>_0000/` (real videos with fakes made from them),
`YouTube-real/<NNNNN>/` (real videos without fakes), `Celeb-synthesis/id<T>_id<S>_0000/` (video T with
the face of video S swapped in, Celeb-DF's naming) and `List_of_testing_videos.txt` ("1 PATH" for a real
test video, "0 PATH" for a fake one: Celeb-DF's convention, 1 = real), about a third of each class.

The scenes and the fake's artifact are the FF-style set's (scene, manipulations), so a detector trained
there has something to transfer; the data set around them differs, as Celeb-DF differs from FF++:

- backgrounds: a studio backdrop (a vignetted radial gradient in darker, cooler colours) instead of
  textures, gradients and stripes;
- lighting: a warm colour cast and a darker exposure;
- resolution: frames rendered at half the size and upscaled (softer detail);
- format: JPEG at quality 70 instead of lossless PNG.

Real and fake frames of one video go through the same shift after the manipulation, and the fake
shares its target frame's sensor noise, so inside the data set no global cue separates the classes.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from PIL import Image

from clipforensics.core.errors import UserError
from clipforensics.synthetic.manipulations import make_job, manipulate
from clipforensics.synthetic.scene import RNG_BACKGROUND, Video, add_noise, make_video, render


class StyleSettings(Protocol):
    """What a style's writer reads of the generator's settings (write.SyntheticSettings), named here so this
    module does not import the module that registers it."""

    videos: int
    frames: int
    size: int
    seed: int
    strength: float
    manipulations: tuple[str, ...]


REAL_CLASS, EXTRA_REAL_CLASS, FAKE_CLASS = "Celeb-real", "YouTube-real", "Celeb-synthesis"
TEST_LIST = "List_of_testing_videos.txt"
LAYOUT = (f"{REAL_CLASS}/id<N>_0000/<frame>.jpg, {EXTRA_REAL_CLASS}/<NNNNN>/<frame>.jpg, "
          f"{FAKE_CLASS}/id<target>_id<source>_0000/<frame>.jpg, {TEST_LIST}")
RNG_TEST_LIST = 100  # a stream id far from scene's, so the test list never shares a stream with the pixels
Pairing = Callable[[int, int], list[tuple[int, int]]]


@dataclass(frozen=True)
class Domain:
    """How this data set's frames differ from the FF-style set's: one value per data set, not per class."""

    render_scale: float = 0.5
    cast: tuple[float, float, float] = (1.10, 0.97, 0.84)  # warm: more red, less blue
    exposure: float = -14.0  # darker
    jpeg_quality: int = 70


DOMAIN = Domain()


def studio_background(seed: int, video: int, size: int) -> np.ndarray:
    """A vignetted radial backdrop in darker, cooler colours, with its light spot off centre."""
    rng = np.random.default_rng([seed, video, RNG_BACKGROUND, 1])
    inner = rng.uniform([40, 60, 90], [110, 130, 170])
    outer = inner * rng.uniform(0.2, 0.45)
    cy, cx = rng.uniform(0.15, 0.45) * size, rng.uniform(0.2, 0.8) * size
    c = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(c, c, indexing="ij")
    t = np.clip(np.hypot(y - cy, x - cx) / (0.9 * size), 0.0, 1.0)[..., None]
    return (inner + (outer - inner) * t ** 1.5).astype(np.float32)


def _scene(seed: int, video: int, frames: int, size: int) -> Video:
    return dataclasses.replace(make_video(seed, video, frames, size), background=studio_background(seed, video, size))


def _shift(img: np.ndarray, domain: Domain) -> np.ndarray:
    return img * np.asarray(domain.cast, np.float32) + np.float32(domain.exposure)


def _jpeg(pixels: np.ndarray, size: int, domain: Domain) -> bytes:
    """Upscale to the output size and encode: the data set's resolution and format."""
    image = Image.fromarray(pixels, "RGB").resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=domain.jpeg_quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class Folders:
    """Which generated video goes where: videos 0..n_celeb-1 are Celeb-real (with fakes), the rest YouTube-real."""

    n_celeb: int
    n_videos: int

    @classmethod
    def of(cls, videos: int) -> "Folders":
        n_youtube = videos // 4
        if videos - n_youtube < 2:
            raise UserError(f"--style celebdf needs at least 2 videos with fakes, got --videos {videos}")
        return cls(videos - n_youtube, videos)

    def real(self, video: int) -> str:
        return f"{REAL_CLASS}/id{video}_0000" if video < self.n_celeb else f"{EXTRA_REAL_CLASS}/{video:05d}"

    @staticmethod
    def fake(target: int, source: int) -> str:
        return f"{FAKE_CLASS}/id{target}_id{source}_0000"


def test_videos(seed: int, folders: Folders, sources: dict[int, int]) -> list[tuple[int, str]]:
    """(label digit, listed path) of the test list: a third of the Celeb-real videos with their fakes and a
    third of the YouTube-real ones, in Celeb-DF's "1 = real, 0 = fake" convention."""
    rng = np.random.default_rng([seed, RNG_TEST_LIST])
    celeb = sorted(rng.permutation(folders.n_celeb)[: max(1, folders.n_celeb // 3)].tolist())
    youtube = list(range(folders.n_celeb, folders.n_videos))
    youtube = sorted(rng.permutation(youtube)[: len(youtube) // 3].tolist()) if youtube else []
    lines = [(1, f"{folders.real(v)}.mp4") for v in celeb + youtube]
    lines += [(0, f"{Folders.fake(v, sources[v])}.mp4") for v in celeb]
    return lines


def write_celebdf(root: Path, settings: StyleSettings, pairs: Pairing) -> str:
    """Write every video, fake and the test list into `root`; return README.txt's description of the set.
    Celeb-DF has one fake class: it is made with the first of --manipulations (by default FaceSwap, as
    Celeb-DF's fakes are face swaps)."""
    folders = Folders.of(settings.videos)
    low = max(16, int(round(settings.size * DOMAIN.render_scale)))
    scenes = [_scene(settings.seed, v, settings.frames, low) for v in range(settings.videos)]
    sources = dict(pairs(folders.n_celeb, settings.seed))
    manipulation = settings.manipulations[0]
    for v in range(settings.videos):
        out = {folders.real(v): None}
        if v < folders.n_celeb:
            out[Folders.fake(v, sources[v])] = sources[v]
        for folder in out:
            (root / folder).mkdir(parents=True)
        for f in range(settings.frames):
            clean = render(scenes[v], f, low)
            name = f"{f:0{max(3, len(str(settings.frames - 1)))}d}.jpg"
            for folder, source in out.items():
                img = clean if source is None else manipulate(
                    manipulation, clean, make_job(manipulation, settings.seed, scenes, v, source, f, low),
                    settings.strength)
                pixels = add_noise(_shift(img, DOMAIN), settings.seed, v, f)
                (root / folder / name).write_bytes(_jpeg(pixels, settings.size, DOMAIN))
    lines = test_videos(settings.seed, folders, sources)
    (root / TEST_LIST).write_text("".join(f"{digit} {path}\n" for digit, path in lines), encoding="utf-8")
    return (f"Celeb-DF v2 layout: {folders.n_celeb} Celeb-real videos with one {manipulation} fake each "
            f"(Celeb-synthesis), {folders.n_videos - folders.n_celeb} YouTube-real videos, {len(lines)} videos in "
            f"{TEST_LIST} (1 = real, 0 = fake); fakes made with {manipulation} only.\nDomain shift from the FF-style set: studio backgrounds, warm and "
            f"darker lighting, rendered at {low} px and upscaled to {settings.size}, JPEG quality "
            f"{DOMAIN.jpeg_quality}.\n")
