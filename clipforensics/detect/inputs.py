"""Inputs of detect.py: image files, folders of frames and video files, turned into model-ready frames one at a time.

Videos are sampled and face-cropped with the very functions prepare_frames.py uses (frames.video, frames.crops), with
the recipe the run's data root records, so a video meets the detector as its training frames did. A folder of
frames is a video already decoded: the same sampling and cropping apply. Each input is prepared on its own (in a
DataLoader worker), so memory holds a few inputs' sampled frames whatever the number of inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from clipforensics.core.errors import UserError
from clipforensics.core.sampling import natural_key, spread
from clipforensics.data.manifest import IMAGE_EXTENSIONS
from clipforensics.data.images import decode_rgb
from clipforensics.extract.reader import uint8_pixels
from clipforensics.frames.align import source_bounds
from clipforensics.frames.crops import CropRecipe, FrameCrop, crop_video, render
from clipforensics.frames.track import NO_FALLBACK
from clipforensics.frames.video import VIDEO_EXTENSIONS, read_sampled

IMAGE, FRAMES, VIDEO = "image", "frames", "video"
OK, FAILED, NO_FACE = "ok", "failed", "no face"
DEFAULT_VIDEO_FRAMES = 32  # prepare_frames.py's default, for runs whose data root records none


@dataclass(frozen=True)
class Item:
    """One input as named on the command line (or found in a folder that was)."""

    path: Path
    kind: str


@dataclass(frozen=True)
class Sampling:
    """How many frames an input gives and how they are cropped: the run's records, or the user's overrides."""

    crop: CropRecipe | None
    asked: int | None  # --frames-per-video: frames sampled from a video or frame folder (None: as the run's were)
    cap: int | None  # the run's protocol --frames-per-video, applied after sampling as the run's rows were

    @property
    def video_frames(self) -> int:
        return self.asked or (self.crop.frames if self.crop else DEFAULT_VIDEO_FRAMES)

    @property
    def folder_frames(self) -> int | None:
        return self.asked or (self.crop.frames if self.crop else None)


@dataclass
class Prepared:
    """An input's frames as the model takes them, with where each came from; or why there are none."""

    item: Item
    status: str
    pixels: torch.Tensor | None = None  # n x 3 x H x W uint8, resized and cropped as the model takes them
    frames: list[dict] = field(default_factory=list)  # per frame: frame (name or index), box, fallback, face_score
    faces_found: int | None = None  # None when nothing was cropped
    reason: str = ""

    @property
    def n_frames(self) -> int:
        return 0 if self.pixels is None else len(self.pixels)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    except OSError as exc:
        raise UserError(f"cannot list {folder}: {exc.strerror}") from None


def _expand_folder(folder: Path) -> Iterable[Item]:
    """A folder holding images is one video's frames; its videos and sub-folders are inputs of their own."""
    entries = _visible(folder)
    if any(p.is_file() and _is_image(p) for p in entries):
        yield Item(folder, FRAMES)
    for entry in entries:
        if entry.is_dir():
            yield from _expand_folder(entry)
        elif _is_video(entry):  # a broken link or a FIFO too: listed as failed with its reason, never skipped
            yield Item(entry, VIDEO)


def expand(paths: Iterable[str]) -> list[Item]:
    """Every input named, folders expanded; a path that does not exist is refused before any work starts."""
    items: list[Item] = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise UserError(f"input {path} does not exist")
        if path.is_dir():
            found = list(_expand_folder(path))
            if not found:
                raise UserError(f"input folder {path} holds no images, videos or folders of frames "
                                f"({'/'.join(sorted(e[1:] for e in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))})")
            items += found
        else:
            items.append(Item(path, VIDEO if _is_video(path) else IMAGE))
    if not items:
        raise UserError("no inputs given")
    return items


def _read_image(path: Path, size: int | None) -> Image.Image:
    """Decoded as extraction decodes frames (`size`: JPEGs at the DCT scale extraction uses); full size to crop."""
    with Image.open(path) as img:
        return decode_rgb(img, size)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


class Preparer(Dataset):
    """Prepares input i: decode, sample, crop, resize to uint8 model pixels (`LoadedModel.pixels`, as extraction's
    workers do). Failures become a status and a reason, never a crash."""

    def __init__(self, items: list[Item], sampling: Sampling, pixels: Callable[[Image.Image], Image.Image],
                 image_size: int) -> None:
        self.items, self.sampling, self.pixels, self.image_size = items, sampling, pixels, image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Prepared:
        item = self.items[i]
        try:
            return self._prepare(item)
        except UserError:
            raise
        except Exception as exc:  # any decode failure is data about that input, not a crash (as in extraction)
            return Prepared(item, FAILED, reason=_reason(exc))

    @property
    def _decode_size(self) -> int | None:
        """Frames used whole are decoded exactly as extraction decodes them; frames to crop at full size."""
        return None if self.sampling.crop else self.image_size

    def _prepare(self, item: Item) -> Prepared:
        if item.kind == IMAGE:
            return self._image(item)
        if item.kind == VIDEO:
            sampled = read_sampled(item.path, self.sampling.video_frames, threads=1)
            frames = [frame[..., ::-1] for frame in sampled.frames]
            names: list[str | int] = list(sampled.indices)
        else:
            files = [p for p in _visible(item.path) if p.is_file() and _is_image(p)]
            keep = spread(len(files), self.sampling.folder_frames or len(files))
            files = [files[k] for k in keep]
            frames = [np.asarray(_read_image(p, self._decode_size)) for p in files]
            names = [p.name for p in files]
        keep = spread(len(frames), self.sampling.cap or len(frames))
        return self._frames(item, [frames[k] for k in keep], [names[k] for k in keep])

    def _image(self, item: Item) -> Prepared:
        rgb = np.asarray(_read_image(item.path, self._decode_size))
        if self.sampling.crop is None:
            return self._finish(item, [rgb], [{"frame": item.path.name}], None)
        return self._frames(item, [rgb], [item.path.name], no_face="no face found")

    def _frames(self, item: Item, frames: list[np.ndarray], names: list, no_face: str = "") -> Prepared:
        """prepare_frames.py's crops (detection, one tracked face, alignment) of RGB frames, back to RGB (it
        crops BGR frames and writes lossless PNG; extraction reads RGB)."""
        if self.sampling.crop is None:
            return self._finish(item, frames, [{"frame": name} for name in names], None)
        size = self.sampling.crop.size
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
        times = names if all(isinstance(n, int) for n in names) else list(range(len(names)))
        crops = crop_video(bgr, times, self.sampling.crop).crops
        detected = sum(crop.face.fallback == NO_FALLBACK for crop in crops)
        if not detected:
            return Prepared(item, NO_FACE, faces_found=0, reason=no_face or f"no face found in {len(frames)} frames")
        return self._finish(item, [render(f, crop, size)[..., ::-1] for f, crop in zip(bgr, crops)],
                            [_frame_row(name, crop, size) for name, crop in zip(names, crops)], detected)

    def _finish(self, item: Item, images: list[np.ndarray], rows: list[dict], faces: int | None) -> Prepared:
        if not images:
            return Prepared(item, FAILED, reason="no frame could be read")
        pixels = torch.stack([uint8_pixels(self.pixels(Image.fromarray(np.ascontiguousarray(img)))) for img in images])
        return Prepared(item, OK, pixels, rows, faces)


def _frame_row(name, crop: FrameCrop, size: int) -> dict:
    """Where a frame's crop came from: what it shows as a box in the frame (as faces.csv's x0..y1), why."""
    box = crop.square if crop.square is not None else [round(v, 2) for v in source_bounds(crop.matrix, size)]
    return {"frame": name, "box": list(box), "fallback": crop.face.fallback,
            "face_score": None if np.isnan(crop.face.score) else float(crop.face.score)}


def identity(batch: Prepared) -> Prepared:
    """DataLoader collate for one input at a time."""
    return batch


def worker_threads(_: int) -> None:
    """One OpenCV and torch thread per worker: the workers are the parallelism."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

