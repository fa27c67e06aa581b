"""Peak memory and speed of detect.py as the number of inputs grows (N and 4N videos by default).

A tiny run is made once (generated frames -> tiny-vit cache -> logreg head); N distinct videos are
written from the generated frames (FFV1, lossless). Then, each in a FRESH child process that runs
detect.py's main() and reports its peak RSS (VmHWM) at exit:

    detect.py --run RUN <N videos> --workers W --batch-size 64 --no-sheets
    detect.py --run RUN <4N videos> ...

The claim under test: detect.py streams its inputs, so peak RSS does not grow with their number
(the baseline is the imported libraries and the model). With --sheets the same holds: a sheet is
written and dropped per input.

    .venv/bin/python bench/detect_memory.py                      # ~1 min on 2 cores
    .venv/bin/python bench/detect_memory.py --videos 20,80       # smoke
    python bench/detect_memory.py --model ViT-B-32 --workers 8 --frames 32 --size 256   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import HelpFormatter, ROOT, command_line, machine, markdown_table, met

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import detect
start = time.perf_counter()
code = detect.main({argv!r})
seconds = time.perf_counter() - start
with open("/proc/self/status") as fh:
    peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({{"code": code, "seconds": seconds, "peak_kib": peak}}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--videos", default="50,200", help="input counts (comma list; the last vs the first is the ratio)")
    p.add_argument("--frames", type=int, default=8, help="frames per video")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels")
    p.add_argument("--sheets", action="store_true", help="also write a contact sheet per input")
    p.add_argument("--model", default="tiny-vit", help="open_clip model of the run (random weights)")
    p.add_argument("--workers", type=int, default=0, help="detect.py --workers (decoding processes)")
    p.add_argument("--keep", default=None, help="work here instead of a temporary folder")
    return p.parse_args(argv)


def make_run(work: Path, model: str) -> tuple[Path, Path]:
    """Generated frames, a cache of `model` and a logreg head on it."""
    import extract_features
    import fit_heads
    from clipforensics.synthetic.write import generate
    from common import quiet

    root = generate(work / "frames", videos=48, frames=2, size=64, strength=3, overwrite=True)
    with quiet():
        assert extract_features.main(["--data-root", str(root), "--out", str(work / "c.h5"), "--model", model,
                                      "--pretrained", "none", "--workers", "0", "--overwrite"]) == 0
        assert fit_heads.main(["--cache", str(work / "c.h5"), "--heads", "logreg", "--out", str(work / "runs"),
                               "--overwrite"]) == 0
    return work / "runs" / "logreg", root


def write_videos(folder: Path, count: int, frames: int, size: int) -> list[Path]:
    """`count` distinct lossless videos of generated scenes (one generated video per input)."""
    import cv2
    from clipforensics.synthetic import scene as synthetic

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in range(count):
        path = folder / f"{v:05d}.mkv"
        if not path.exists():
            scene = synthetic.make_video(1, v, frames, size)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, (size, size))
            for f in range(frames):
                writer.write(synthetic.add_noise(synthetic.render(scene, f, size), 1, v, f)[..., ::-1].copy())
            writer.release()
        paths.append(path)
    return paths


def measure(run: Path, videos: list[Path], out: Path, sheets: bool, workers: int) -> dict:
    argv = ["--run", str(run), *map(str, videos), "--out", str(out), "--workers", str(workers),
            "--batch-size", "64", "--sheets" if sheets else "--no-sheets"]
    done = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), argv=argv)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def where() -> str:
    """The device detect.py runs on (its --device auto) and this machine."""
    import torch
    gpu = f"{torch.cuda.get_device_name()}, " if torch.cuda.is_available() else ""
    return f"{gpu}{machine()}"


def main(argv=None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.videos.split(",")]
    where_text = where()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        start = time.perf_counter()
        run, _ = make_run(work, args.model)
        videos = write_videos(work / "videos", max(counts), args.frames, args.size)
        print(f"set-up {time.perf_counter() - start:.0f} s", file=sys.stderr)
        rows, peaks = [], []
        for count in counts:
            result = measure(run, videos[:count], work / f"out-{count}", args.sheets, args.workers)
            assert result["code"] == 0, result
            peaks.append(result["peak_kib"] / 1024)
            rows.append([count, count * args.frames, f"{result['seconds']:.1f}",
                         f"{count / result['seconds']:.1f}", f"{peaks[-1]:.0f}"])
    growth = peaks[-1] / peaks[0] - 1
    print(f"`{command_line()}`\n\n{where_text}; {args.model} (random weights), logreg head, {args.workers} workers, "
          f"{args.frames} frames of {args.size} px per video (FFV1)\n")
    print(markdown_table(["videos", "frames", "seconds", "videos/s", "peak RSS (MiB)"], rows))
    print(f"\npeak RSS growth from {counts[0]} to {counts[-1]} videos: {100 * growth:+.1f} % "
          f"(goal < 10 %: {met(growth, 0.10, higher_is_better=False)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
