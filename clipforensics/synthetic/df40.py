"""The generated data set in DF40's processed layout, beside FF++'s real frames (data/layouts/df40.py reads it).

    python -m clipforensics.synthetic --style df40 --out data/df40-synthetic

Each manipulation is one DF40 method in its FF++ domain, DF40/<manipulation in lower case>/ff/frames/<target>_<source>/,
and the real videos are where DF40's scripts read FF++'s: FaceForensics++/original_sequences/youtube/c23/frames/<id>/.
"""

from __future__ import annotations

from clipforensics.synthetic.dfd import Ids

REALS = "FaceForensics++/original_sequences/youtube/c23/frames"
LAYOUT = f"DF40/<method>/ff/frames/<target>_<source>/<frame>.png and {REALS}/<id>/<frame>.png"


def real_folder(settings: Ids, target: int) -> str:
    return f"{REALS}/{settings.video_id(target)}"


def fake_folder(settings: Ids, manipulation: str, target: int, source: int) -> str:
    return f"DF40/{manipulation.lower()}/ff/frames/{settings.video_id(target)}_{settings.video_id(source)}"
