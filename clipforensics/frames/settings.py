"""prepare_frames.py's options. Light on purpose (no OpenCV, dlib): the script parses its options with these
before it imports the stage, so `--help` and a mistyped option answer at once. The crop recipe they make (what a
rerun into the same data root must match) is built in `frames.recipe`."""

from __future__ import annotations

from dataclasses import dataclass

from clipforensics.core.settings import option
from clipforensics.data.layouts import AUTO, reader_names, video_reader

COMPRESSIONS = ("raw", "c23", "c40")


@dataclass
class FrameSettings:
    """Options of prepare_frames.py. Identity fields decide the crops' pixels or the choice of videos:
    they make up `recipe.crop_recipe`, which a rerun into the same data root must match."""

    videos_root: str = option(None, "FF++ root (original_sequences/, manipulated_sequences/) or one folder "
                                    "of videos per class", required=True, metavar="DIR")
    out: str = option(None, "data root to write (Real_youtube/<video>/<frame>.png, ...)", required=True,
                      metavar="DATA_ROOT")
    frames: int = option(32, "at most N frames per video, spread evenly over its length (all frames if shorter)",
                         flag="--frames-per-video", metavar="N", identity=True, formerly="--frames")
    size: int = option(256, "side of the square output crops in pixels (DeepfakeBench: 256)", identity=True)
    margin: float = option(1.3, "crop side as a multiple of the face: of the aligned face square, or of the "
                                "face box's longer side with --align none (DeepfakeBench's scale: 1.3)", identity=True)
    detector: str = option("dlib", "face detector: dlib (HOG), dlib-cnn (MMOD CNN, slow on a CPU), haar (OpenCV)",
                           identity=True)
    align: str = option("five-point", "crop alignment: five-point (dlib's 5 landmarks, eyes level), deepfakebench "
                                      "(their 68-point keypoints and template), none (square box, no rotation)",
                        identity=True)
    landmarks: str = option("5", "landmarks recorded in faces.csv: 5, or 68 to add dlib's 68-point model",
                            choices=("5", "68"), identity=True)
    detect_max_side: int = option(640, "frames are shrunk to at most this many pixels for detection only; a "
                                       "frame with no face there is searched again at full size (landmarks "
                                       "and crops use the full frame)", identity=True)
    layout: str = option(AUTO, "input layout: ffpp (the FF++ tree), folders (one folder of videos per class), or a "
                               "data set of clipforensics/data/layouts/ (its label files are copied beside the "
                               "frames); auto: ffpp if original_sequences/ or manipulated_sequences/ exists, else "
                               "a data set's marker files, else folders",
                         choices=(AUTO, *reader_names(video_reader)), identity=True)
    compression: str = option("c23", "FF++ compression folder to read", choices=COMPRESSIONS, identity=True)
    classes: tuple[str, ...] = option((), "only these output classes, e.g. Real_youtube,FaceSwap (default: all but "
                                          "Real_actors, which extract_features.py needs --real-classes to label real)")
    max_videos: int | None = option(None, "at most N videos per class, first in name order (trial runs)")
    workers: int | None = option(None, "worker processes that crop videos in parallel (0: in the main process; "
                                       "default: one per CPU core)", metavar="N", execution_only=True,
                                 formerly="--jobs")
    shard: str | None = option(None, "do only shard K of N of the videos (K/N, e.g. for SLURM arrays), into "
                                     "DATA_ROOT.shards/; then run `prepare_frames.py merge` with the same options",
                               metavar="K/N", execution_only=True)
    overwrite: bool = option(False, "redo every input video, also when --out was prepared with other settings "
                                    "(folders of videos no longer in the input stay: a fresh --out gives a clean tree)")
