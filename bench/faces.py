"""Speed and recall of the face stage per detector, on one core, at 640x480 and 1280x720.

Frames are scikit-image's astronaut.png (a real face) turned between -20 and 20 degrees on a grey
frame, the face about a quarter of the frame height (FF++-like). For each detector:

    detect        the detector alone on the frame shrunk to --detect-max-side (default 640, the
                  prepare_frames.py default), and at full resolution
    per frame     crops.crop_video: detection + tracking + 5-point landmarks + alignment matrix, and
                  the warp to a 256 px crop (no decoding, no PNG writing)

frames/s per core = 1 / CPU seconds per frame with one thread (dlib is single-threaded; OpenCV is set
to one thread), the best of --repeats rounds. CPU time, not wall time: on a shared machine it is what
one core delivers, whatever else runs (cache and memory contention still count). dlib-cnn takes
seconds a frame on a CPU: it runs on --cnn-frames frames, once, and not on full 1280x720 frames.

A second table shows recall (share of frames where the face was found, IoU >= 0.3 with the true
box) for several face sizes and shrink settings: what detecting on a shrunk copy costs, and what
the full-size retry of frames without a face on the shrunk copy gets back.

    .venv/bin/python bench/faces.py                  # ~3 min on one free core (dlib-cnn: ~1 min of it)
    .venv/bin/python bench/faces.py --cnn-frames 0 --repeats 1   # smoke run without the CNN
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import HelpFormatter, command_line, markdown_table

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data as skdata  # noqa: E402

from clipforensics.frames.crops import CropRecipe, crop_video, render  # noqa: E402
from clipforensics.frames.detectors import detect, make_detector, package_versions  # noqa: E402
from clipforensics.frames.track import iou  # noqa: E402

FACE_BOX = (175.0, 76.0, 265.0, 166.0)  # dlib's box of the upright face in astronaut.png (90 px)
FACE_CENTRE = ((FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2)  # turned about this
RESOLUTIONS = ((640, 480), (1280, 720))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--frames", type=int, default=8, help="frames per measurement (dlib, haar)")
    p.add_argument("--cnn-frames", type=int, default=1, help="frames for dlib-cnn per resolution (0: skip it)")
    p.add_argument("--repeats", type=int, default=2, help="rounds per measurement (the best counts)")
    p.add_argument("--detect-max-side", type=int, default=640, help="shrink for detection (prepare_frames default)")
    p.add_argument("--face-fraction", type=float, default=0.25, help="face box height / frame height")
    p.add_argument("--recall-sizes", default="48,64,96,160", help="face sizes (px) in 1280x720 frames for recall")
    p.add_argument("--recall-sides", default="1280,640,480,320", help="--detect-max-side values for recall")
    return p.parse_args(argv)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def frames_with_face(width: int, height: int, face_px: float, n: int) -> tuple[list[np.ndarray], list[tuple]]:
    """n BGR frames with the astronaut's face `face_px` tall, turned -20..20 degrees; and the true boxes."""
    photo = np.ascontiguousarray(skdata.astronaut()[..., ::-1])
    scale = face_px / (FACE_BOX[3] - FACE_BOX[1])
    frames, boxes = [], []
    for i, angle in enumerate(np.linspace(-20, 20, n) if n > 1 else [0.0]):
        centre = (width / 2 + 0.05 * width * math.cos(i), height / 2 + 0.05 * height * math.sin(i))
        matrix = cv2.getRotationMatrix2D(FACE_CENTRE, float(angle), scale)
        matrix[:, 2] += np.array(centre) - np.array(FACE_CENTRE)
        frames.append(cv2.warpAffine(photo, matrix, (width, height), borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=(128, 128, 128)))
        half = face_px / 2  # the true box: dlib's upright box, scaled, about the (unmoved) rotation centre
        boxes.append((centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half))
    return frames, boxes


def cpu_timed(fn, *args) -> tuple[float, object]:
    """(CPU seconds of this process, result) of one call."""
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def best_seconds_per_frame(fn, frames: list[np.ndarray], repeats: int) -> float:
    rounds = []
    for _ in range(repeats):
        seconds, _ = cpu_timed(lambda: [fn(frame) for frame in frames])
        rounds.append(seconds / len(frames))
    return min(rounds)


def speed_rows(args: argparse.Namespace) -> list[list[object]]:
    rows = []
    for name in ("dlib", "haar", "dlib-cnn"):
        n = args.cnn_frames if name == "dlib-cnn" else args.frames
        if n == 0:
            continue
        repeats = 1 if name == "dlib-cnn" else args.repeats
        detector = make_detector(name)
        for width, height in RESOLUTIONS:
            frames, _ = frames_with_face(width, height, args.face_fraction * height, n)
            detector(frames[0])  # warm-up: lazy initialisation is not per-frame cost
            shrunk = best_seconds_per_frame(lambda f: detect(detector, f, args.detect_max_side), frames, repeats)
            full = (best_seconds_per_frame(lambda f: detect(detector, f, max(width, height)), frames, repeats)
                    if name != "dlib-cnn" or max(width, height) <= args.detect_max_side else math.nan)
            recipe = CropRecipe(name, args.detect_max_side, "five-point", "5", 1.3, 256)
            rounds = []
            for _ in range(repeats):
                seconds, result = cpu_timed(crop_video, frames, list(range(n)), recipe)
                seconds += cpu_timed(lambda: [render(f, c, 256) for f, c in zip(frames, result.crops)])[0]
                rounds.append(seconds / n)
            found = sum(c.face.fallback == "" for c in result.crops)
            rows.append([name, f"{width}x{height}", n, f"{1 / shrunk:.2f}",
                         "n/a" if math.isnan(full) else f"{1 / full:.2f}", f"{1 / min(rounds):.2f}",
                         f"{found}/{n}"])
    return rows


def recall_rows(args: argparse.Namespace) -> list[list[object]]:
    """Per face size and shrink: faces found on the shrunk copy alone, and with the full-size retry."""
    detector = make_detector("dlib")
    sides = [int(v) for v in args.recall_sides.split(",")]
    rows = []
    for face_px in (int(v) for v in args.recall_sizes.split(",")):
        frames, boxes = frames_with_face(1280, 720, face_px, args.frames)
        row: list[object] = [f"{face_px} px"]
        for side in sides:
            cells = []
            for retry in (False, True):
                hits = sum(any(iou(face.box, box) >= 0.3 for face in detect(detector, frame, side, retry))
                           for frame, box in zip(frames, boxes))
                cells.append(f"{hits}/{len(frames)}")
            row.append(cells[0] if side >= 1280 else " / ".join(cells))
        rows.append(row)
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    cv2.setNumThreads(1)
    versions = package_versions()
    print(f"# {command_line()}")
    print(f"# CPU: {cpu_name()}; one core (OpenCV 1 thread; dlib {versions['dlib']} is single-threaded); "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"# face {args.face_fraction:.2f} x frame height, turned -20..20 degrees; detection on a copy shrunk to "
          f"{args.detect_max_side} px unless 'full'\n")
    print(markdown_table(["detector", "frame", "frames", f"detect fps (shrunk to {args.detect_max_side})",
                          "detect fps (full frame)", "per frame fps (detect+track+landmarks+align+warp)",
                          "face found"], speed_rows(args)))
    print("\nRecall of dlib (HOG) in 1280x720 frames by --detect-max-side: faces found / frames, on the shrunk copy "
          "alone / with the full-size retry of frames where it found none (what prepare_frames.py does):\n")
    sides = args.recall_sides.split(",")
    print(markdown_table(["face height", *[f"max side {s}" for s in sides]], recall_rows(args)))


if __name__ == "__main__":
    main()
