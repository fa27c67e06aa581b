"""DFD (Google's DeepFakeDetection) inside the FaceForensics++ download tree, with its masks.

Videos: original_sequences/actors/<compression>/videos/01__exit_phone_room.mp4 (real: actor 01 in a scene),
manipulated_sequences/DeepFakeDetection/<compression>/videos/01_02__exit_phone_room__YVGY8LOK.mp4 (fake: that
scene of actor 01 with actor 02's face) and manipulated_sequences/DeepFakeDetection/masks/videos/<same name>.mp4
(the fake's mask: where the face was replaced). DFD's scenes hold several people, so every fake must have its
mask: prepare_frames.py crops the face on the mask (frames/crops.py); without it the crop is often another,
untouched person and the measured AUC is meaningless (issue threads report about 0.99). DeepfakeBench's
rearrange.py reads the same folders (DFD_real from actors, DFD_fake from DeepFakeDetection with its masks) and
gives DFD no split: every video is in train, val and test alike; here it has no official split either.

Frames (what prepare_frames.py writes): DFD-real/<video>/ (real; not Real_actors, which FF++ class folders
read as fake unless named in --real-classes) and DeepFakeDetection/<video>/ (fake). A fake
shares its group with the real video it was made from (01_02__exit_phone_room__YVGY8LOK -> 01__exit_phone_room).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (FAKE, LAYOUTS, REAL, Found, FrameReader, Layout, VideoClasses,
                                             VideoFile, VideoReader, listing, subfolders, videos_in)
from clipforensics.data.layouts.listed import listed_frames
from clipforensics.data.layouts.masked import MaskedVideoFile
from clipforensics.data.manifest import OFFICIAL_SPLIT

REAL_CLASS, FAKE_CLASS = "DFD-real", "DeepFakeDetection"
ACTORS, MANIPULATED = "original_sequences/actors", f"manipulated_sequences/{FAKE_CLASS}"
MASKS = f"{MANIPULATED}/masks/videos"
DFD_FAKE = re.compile(r"^(\d+)_(\d+)__(.+?)__[A-Za-z0-9]+$")  # 01_02__exit_phone_room__YVGY8LOK


def dfd_target(name: str) -> str:
    """The real video a fake was made from: 01_02__exit_phone_room__YVGY8LOK -> 01__exit_phone_room."""
    match = DFD_FAKE.match(name)
    return f"{match.group(1)}__{match.group(3)}" if match else name


def _frame_listing(root: Path, found: Found, labels: Path | None) -> pd.DataFrame:
    """Every folder of frames under Real_actors/ and DeepFakeDetection/, labelled by its class folder."""
    rows = []
    for folder in sorted(found.frames):
        top, _, name = folder.partition("/")
        if top not in (REAL_CLASS, FAKE_CLASS) or not name or "/" in name:
            continue
        label = REAL if top == REAL_CLASS else FAKE
        rows.append({"listed": folder, "label": label, "manipulation": top, "name": name,
                     "target": name if label == REAL else dfd_target(name), "source": "", OFFICIAL_SPLIT: ""})
    if not rows:
        raise UserError(f"no frame folders in {root}/{REAL_CLASS}/ or {root}/{FAKE_CLASS}/")
    return listing(rows).drop(columns=[OFFICIAL_SPLIT])


def _masked(fakes: list[Path], masks: Path) -> list[VideoFile]:
    """Each fake with its mask video; a fake without one is refused (its crop would be of the wrong face)."""
    missing = [path.name for path in fakes if not (masks / path.name).is_file()]
    if missing:
        raise UserError(f"{len(missing)} of {len(fakes)} DFD fakes have no mask in {masks} (first: {missing[0]}); "
                        "download the masks (FaceForensics++ download script: -d DeepFakeDetection -t masks): "
                        "without them the crop is often another person's untouched face")
    return [MaskedVideoFile(FAKE_CLASS, path.stem, path, mask=masks / path.name) for path in fakes]


def dfd_videos(root: Path, compression: str) -> VideoClasses:
    """The actors' videos and the DFD fakes (each with its mask) of one compression."""
    real, fake = root / ACTORS / compression / "videos", root / MANIPULATED / compression / "videos"
    if not real.is_dir() or not fake.is_dir():
        found = sorted({c.name for c in subfolders(root / MANIPULATED)} - {"masks"})
        raise UserError(f"DFD needs {real} and {fake}; compressions found: {', '.join(found) or 'none'} "
                        "(set --compression)")
    return {REAL_CLASS: [VideoFile(REAL_CLASS, path.stem, path) for path in videos_in(real)],
            FAKE_CLASS: _masked(videos_in(fake), root / MASKS)}


def _dfd_tree(root: Path) -> bool:
    """A download of DFD alone: its folders, and no other manipulation (a full FF++ tree stays `ffpp`)."""
    manipulated = {folder.name for folder in subfolders(root / "manipulated_sequences")}
    return manipulated == {FAKE_CLASS} and (root / ACTORS).is_dir()


def _dfd_frames(root: Path) -> bool:
    """Frames prepared from DFD: its two class folders and no FF++ real class."""
    return all((root / name).is_dir() for name in (REAL_CLASS, FAKE_CLASS)) and not (root / "Real_youtube").is_dir()


LAYOUTS.register("dfd", Layout(
    "dfd", priority=-10,
    frames=FrameReader(listed_frames(_frame_listing), _dfd_frames),
    videos=VideoReader(dfd_videos, _dfd_tree, compression=True)))
