"""The generated Celeb-DF set in Celeb-DF++'s layout (data/layouts/celebdfpp.py reads it).

    python -m clipforensics.synthetic --style celebdfpp --out data/celebdfpp-synthetic

The Celeb-DF style's videos, domain shift and test list (celebdf.py), with the fakes where Celeb-DF++ keeps them,
one folder per method: Celeb-synthesis/FaceSwap/<manipulation>/id<T>_id<S>_0000/, listed so in the test list.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from clipforensics.synthetic.celebdf import FAKE_CLASS, TEST_LIST, Pairing, StyleSettings, write_celebdf

SCENARIO = "FaceSwap"
LAYOUT = (f"Celeb-real/id<N>_0000/<frame>.jpg, YouTube-real/<NNNNN>/<frame>.jpg, "
          f"{FAKE_CLASS}/{SCENARIO}/<method>/id<target>_id<source>_0000/<frame>.jpg, {TEST_LIST}")


def write_celebdfpp(root: Path, settings: StyleSettings, pairs: Pairing) -> str:
    """Write the Celeb-DF style, then move its fakes into their scenario and method folder and list them there."""
    details = write_celebdf(root, settings, pairs)
    method = settings.manipulations[0]
    fakes, nested = root / FAKE_CLASS, root / FAKE_CLASS / SCENARIO / method
    nested.mkdir(parents=True)
    for video in sorted(p for p in fakes.iterdir() if p.name != SCENARIO):
        shutil.move(str(video), str(nested / video.name))
    listed = (root / TEST_LIST).read_text(encoding="utf-8")
    (root / TEST_LIST).write_text(listed.replace(f" {FAKE_CLASS}/", f" {FAKE_CLASS}/{SCENARIO}/{method}/"),
                                  encoding="utf-8")
    return details.replace("Celeb-DF v2 layout", f"Celeb-DF++ layout (fakes in {FAKE_CLASS}/{SCENARIO}/{method}/)")
