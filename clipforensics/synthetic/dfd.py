"""The generated data set as frames prepared from DFD (clipforensics/data/layouts/dfd.py reads them).

    python -m clipforensics.synthetic --style dfd --out data/dfd-synthetic

The FF-style scenes and artifacts in DFD's names: real video N is actor N in one scene, DFD-real/<NN>__talking/;
each fake, DeepFakeDetection/<target>_<source>__talking__<Manipulation>/, is that scene with the source's face
(DFD names a fake target_source__scene__ID; the manipulation's name stands in for the ID).
"""

from __future__ import annotations

from typing import Protocol

SCENE = "talking"
LAYOUT = f"DFD-real/<NN>__{SCENE}/<frame>.png and DeepFakeDetection/<target>_<source>__{SCENE}__<Manipulation>/<frame>.png"


class Ids(Protocol):
    """What the folder rules read of the generator's settings (write.SyntheticSettings)."""

    def video_id(self, index: int) -> str: ...


def real_folder(settings: Ids, target: int) -> str:
    return f"DFD-real/{settings.video_id(target)}__{SCENE}"


def fake_folder(settings: Ids, manipulation: str, target: int, source: int) -> str:
    return f"DeepFakeDetection/{settings.video_id(target)}_{settings.video_id(source)}__{SCENE}__{manipulation}"
