"""Score new images, frame folders and videos with a trained detector, and show where it looked.

    python detect.py --run runs/NAME/logreg  video.mp4 frames_folder/ face.png ... [--out detections] [--explain]
    python detect.py --run runs/NAME-lora    videos_folder/ --json
    python detect.py --run runs/NAME/logreg  face.png --calibrate platt   # P(fake) beside the raw score

The detector is rebuilt from the run's own records (model, weights, preprocessing, head, validation threshold,
the face-crop settings of its data root); what cannot be rebuilt exactly is refused. Writes detections.csv (one
row per input: score, margin to the threshold, decision), frames.csv (one row per frame), detections.json (both)
and a contact sheet PNG per input. Scores are raw, not probabilities: --calibrate fits one on the run's validation
frames and adds it beside them.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse

from clipforensics.core.errors import cli_entry
from clipforensics.core.registry import SuggestingParser
from clipforensics.core.settings import add_arguments, from_namespace
from clipforensics.detect.settings import DetectSettings


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of frames, video files, "
                        "or folders holding them")
    add_arguments(parser, DetectSettings, "detection")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    from clipforensics.detect.run import detect  # only now: torch and open_clip take seconds to load

    detect(ns.inputs, from_namespace(DetectSettings, ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
