"""DF40 (github.com/YZY-stack/DF40): 40 generation methods as processed frames, beside the real frames it uses.

DF40 is distributed after DeepfakeBench's preprocessing, fake frames only: DF40/<method>/<domain>/frames/<video>/
(face swap and reenactment, per domain: `ff` or `ffpp` made from FF++ videos, `cdf` or `cdfv2` from Celeb-DF's),
and for image-level methods (entire-face synthesis, editing) images directly in a folder, e.g.
DF40/e4e/ff/inversions/<image>.png, each image one "video". Its real frames are FF++'s and Celeb-DF's, downloaded
apart and read where DF40's rearrange.py reads them, beside DF40/: FaceForensics++/original_sequences/youtube/
<compression>/frames/<video>/ and Celeb-DF-v2/{Celeb-real,YouTube-real}/frames/<video>/. So the data root is
the folder holding DF40/ (and those two). A method and domain is one manipulation (`simswap_ff`, `simswap_cdf`,
as DF40's configs name them); fakes share a group with the real video they were made from (FF++ `000_003` ->
`000`, Celeb-DF `id0_id1_0000` -> `id0_0000`). DF40 ships no per-video split (its train and test releases are
separate downloads), so none is recorded: point the root at the release you test on.
"""

from __future__ import annotations

import posixpath
import sys
from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import FAKE, FRAMES_FOLDER, LAYOUTS, REAL, Found, FrameReader, Layout, listing
from clipforensics.data.layouts.celebdf import CELEBDF_CLASSES, _celebdf_target
from clipforensics.data.layouts.listed import listed_frames
from clipforensics.data.manifest import OFFICIAL_SPLIT

DF40 = "DF40"
FF_REAL, CDF_REAL = "FaceForensics++/original_sequences/youtube", "Celeb-DF-v2"
DOMAINS = {"ff": "ff", "ffpp": "ff", "ff++": "ff", "cdf": "cdf", "cdfv2": "cdf"}
REAL_CLASSES = {FF_REAL: "FF-real", CDF_REAL: "CDF-real"}


def _target(name: str, label: int) -> str:
    """The real video a fake's frames come from: FF++ 000_003 -> 000, Celeb-DF id0_id1_0000 -> id0_0000."""
    parts = name.split("_")
    if label == FAKE and len(parts) == 2 and all(p.isdigit() for p in parts):
        return parts[0]
    return _celebdf_target(name, label)


def _real(folder: str) -> dict | None:
    """The row of a folder of real frames: FaceForensics++/original_sequences/youtube/<c>/frames/<video>, or
    Celeb-DF-v2/<Celeb-real|YouTube-real>/frames/<video>."""
    for prefix, cls in REAL_CLASSES.items():
        rest = folder[len(prefix) + 1:].split("/") if folder.startswith(prefix + "/") else []
        if len(rest) >= 2 and rest[-2] == FRAMES_FOLDER and (prefix == FF_REAL or rest[0] in CELEBDF_CLASSES):
            return {"listed": folder, "label": REAL, "manipulation": cls, "name": rest[-1], "target": rest[-1]}
    return None


def _fakes(folder: str, images: list[str]) -> list[dict]:
    """The rows of one DF40 folder: a video of frames (<method>/<domain>/frames/<video>), or one per image."""
    parts = folder.split("/")[1:]
    if len(parts) < 2:
        return []
    domain = DOMAINS.get(parts[1].lower())
    manipulation = f"{parts[0]}_{domain}" if domain else parts[0]
    if parts[-2] == FRAMES_FOLDER:
        name = parts[-1]
        return [{"listed": folder, "label": FAKE, "manipulation": manipulation, "name": name,
                 "target": _target(name, FAKE)}]
    return [{"listed": image, "label": FAKE, "manipulation": manipulation,
             "name": posixpath.splitext(posixpath.basename(image))[0], "target": ""} for image in images]


def df40_videos(root: Path, found: Found, labels: Path | None) -> pd.DataFrame:
    """DF40's fakes and the real frames beside it; a root without DF40/ fakes is refused."""
    rows = []
    for folder, images in sorted(found.frames.items()):
        if folder.startswith(DF40 + "/"):
            rows += _fakes(folder, images)
        elif (real := _real(folder)) is not None:
            rows.append(real)
    if not any(row["label"] == FAKE for row in rows):
        raise UserError(f"no DF40 frames in {root}/{DF40}/ (<method>/<domain>/frames/<video>/ or image folders)")
    if not any(row["label"] == REAL for row in rows):
        print(f"note: no real frames beside {root}/{DF40}/ (DF40 ships fakes only: put FF++'s in {FF_REAL}/<c>/"
              f"frames/ and Celeb-DF's in {CDF_REAL}/Celeb-real/frames/)", file=sys.stderr)
    return listing({**row, "source": "", OFFICIAL_SPLIT: ""} for row in rows).drop(columns=[OFFICIAL_SPLIT])


LAYOUTS.register("df40", Layout(
    "df40", priority=25, frames=FrameReader(listed_frames(df40_videos), lambda root: (root / DF40).is_dir())))
