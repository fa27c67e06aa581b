"""Turn FaceForensics++ videos (or one folder of videos per class) into the face-cropped data root
that extract_features.py reads, offline: N evenly spaced frames per video, one tracked face per
video, crops aligned on dlib's 5 landmarks (DeepfakeBench's detector, scale 1.3 and 256 px).

    python prepare_frames.py --videos-root DIR --out DATA_ROOT --frames 32
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse

from clipforensics.core.errors import cli_entry
from clipforensics.frames.prepare import prepare
from clipforensics.frames.settings import FrameSettings
from clipforensics.core.settings import from_namespace, settings_parser


def build_parser() -> argparse.ArgumentParser:
    return settings_parser(__doc__, (FrameSettings, "frames"))


@cli_entry
def main(argv: list[str] | None = None) -> int:
    settings = from_namespace(FrameSettings, build_parser().parse_args(argv))
    print(prepare(settings).line(settings.frames))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
