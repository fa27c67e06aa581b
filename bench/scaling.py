"""Extraction throughput: one process vs `torchrun --nproc_per_node=2` (gloo, CPU), same data, side by side.

Each case (model, frame size, N images) runs extract_features.py as a whole command, four ways, interleaved
so background load hits them alike:

    1 process:  python extract_features.py ... --workers 2 --max-images N      (and --max-images 2N)
    2 ranks:    torchrun --nproc_per_node=2 extract_features.py ... --workers 1 --max-images N   (and 2N)

Both settings have 2 decode workers in all; torchrun gives each rank OMP_NUM_THREADS=1 (unless set), the
single process keeps torch's default (one thread per core). images/s is reported three ways:
    whole command   wall time of the command: start-up, model build, prompt embedding, assembly included;
    image loop      first rank entering extraction._run_chunks to last rank leaving it (decode workers'
                    start, decode, forward, chunk writes): each command runs extract_features.main through
                    this file's --child wrapper, which only timestamps that function;
    2N - N          N / (wall(2N) - wall(N)): the fixed cost cancels (noisy when N is small).
The caches of both settings must hold identical embeddings (numpy array_equal); where they do not, a control
run (1 process, OMP_NUM_THREADS=1) tells the thread count apart from the sharding.
Frames come from clipforensics.synthetic; models have random weights (--pretrained none).

    .venv/bin/python bench/scaling.py                        # ~3.5 min on 2 cores
    .venv/bin/python bench/scaling.py --cases tiny-vit:64:64 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import ROOT, HelpFormatter, command_line, machine, markdown_table, timed

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

FRAMES = 8  # frames per generated video
MANIPULATIONS = 4  # clipforensics.synthetic's default manipulations per real video


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--cases", default="tiny-vit:128:1200,ViT-B-32:224:256",
                   help="comma list of MODEL:FRAME_PX:N (each case also runs 2N images)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--chunk-size", type=int, default=64,
                   help="rows per chunk, the unit ranks share (chunk k -> rank k mod 2); the default 512 would "
                        "give one rank 512 of 600 images")
    p.add_argument("--precision", default="auto", help="extract_features.py --precision (auto: measured per machine, see README)")
    p.add_argument("--workers", type=int, default=2, help="decode workers in all (per rank: workers / 2)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest wall time counts")
    p.add_argument("--master-port", type=int, default=29631, help="torchrun --master_port (distinct per run)")
    p.add_argument("--data", default=None, help="generate the frames under this folder (reused if there)")
    p.add_argument("--verbose", action="store_true", help="print each command and its wall time")
    return p.parse_args(argv)


def cases(text: str) -> list[tuple[str, int, int]]:
    out = []
    for item in text.split(","):
        model, size, n = item.strip().split(":")
        out.append((model, int(size), int(n)))
    return out


def make_data(root: Path, size: int, need: int) -> tuple[Path, float]:
    """Generated frames (real + manipulations) of `size` px, at least `need` of them."""
    from clipforensics.synthetic.manipulations import DEFAULT_MANIPULATIONS
    from clipforensics.synthetic.write import generate
    assert len(DEFAULT_MANIPULATIONS) == MANIPULATIONS
    videos = max(2, math.ceil(need / (FRAMES * (1 + MANIPULATIONS))))
    out = root / f"ff-{size}px-{videos}v"
    if out.exists():
        return out, 0.0
    seconds, _ = timed(generate, out, videos=videos, frames=FRAMES, size=size)
    return out, seconds


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def child(prefix: str, argv: list[str]) -> None:
    """Run extract_features.main(argv) as `python extract_features.py argv` would; timestamp the image loop."""
    import extract_features
    from clipforensics.extract import run as extraction
    real, stamps = extraction._run_chunks, {}

    def image_loop(*a, **k):
        stamps["start"] = time.monotonic()  # system-wide clock: comparable between the ranks
        try:
            return real(*a, **k)
        finally:
            stamps["end"] = time.monotonic()
    extraction._run_chunks = image_loop
    rc = extract_features.main(argv)
    Path(f"{prefix}-rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(stamps))
    raise SystemExit(rc)


def loop_seconds(prefix: Path) -> float:
    """First rank in to last rank out of the image loop."""
    stamps = [json.loads(p.read_text()) for p in prefix.parent.glob(prefix.name + "-rank*.json")]
    stamps = [s for s in stamps if s]
    for p in prefix.parent.glob(prefix.name + "-rank*.json"):
        p.unlink()
    return max(s["end"] for s in stamps) - min(s["start"] for s in stamps)


def command(args, ranks: int, model: str, data: Path, out: Path, n: int, port: int) -> list[str]:
    extract = [str(Path(__file__).resolve()), "--child", str(out.with_suffix("")), "--data-root", str(data), "--out", str(out), "--model", model,
               "--pretrained", "none", "--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size),
               "--precision", args.precision, "--workers", str(args.workers // ranks), "--max-images", str(n),
               "--overwrite"]
    if ranks == 1:
        return [sys.executable, *extract]
    return [*torchrun(), "--nnodes=1", f"--nproc_per_node={ranks}", "--master_addr=127.0.0.1",
            f"--master_port={port}", *extract]


def run(args, cmd: list[str], log: Path, threads: int | None = None) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # torchrun's own default (1 per rank) vs torch's default (1 per core)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "w") as fh:
        seconds, done = timed(subprocess.run, cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"failed (rc {done.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    if args.verbose:
        print(f"  {seconds:6.1f} s  {' '.join(cmd)}", file=sys.stderr)
    return seconds


def same(a: Path, b: Path) -> dict:
    """Identical embeddings (numpy array_equal, same rows in the same order)? And how far apart if not."""
    from clipforensics.data.cache import read_cache
    x, y = read_cache(a), read_cache(b)
    if x.manifest["path"].tolist() != y.manifest["path"].tolist():
        return {"equal": False, "rows": len(x.embeddings), "dims": x.embeddings.shape[1], "note": "other rows"}
    ex, ey = x.embeddings.astype(np.float64), y.embeddings.astype(np.float64)
    cos = (ex * ey).sum(1) / np.linalg.norm(ex, axis=1) / np.linalg.norm(ey, axis=1)
    return {"equal": bool(np.array_equal(x.embeddings, y.embeddings)), "rows": len(ex), "dims": ex.shape[1],
            "differ": float((ex != ey).mean()), "max_rel": float(np.abs(ex - ey).max() / np.abs(ex).max()),
            "min_cos": float(cos.min())}


def verdict(c: dict) -> str:
    if c["equal"]:
        return f"yes ({c['rows']} x {c['dims']})"
    if "differ" not in c:
        return f"**NO**: {c['note']}"
    return (f"**NO** ({c['rows']} x {c['dims']}): {100 * c['differ']:.2g} % of values differ, max |diff| "
            f"{c['max_rel']:.1e} of max |value|, 1 - min cosine {1 - c['min_cos']:.1e}")


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["--child"]:  # bench/scaling.py --child PREFIX extract_features args
        return child(sys.argv[2], sys.argv[3:])
    args = parse_args(argv)
    where = machine()
    todo = cases(args.cases)
    port = args.master_port
    walls: dict[tuple, list[float]] = {}
    loops: dict[tuple, list[float]] = {}
    rows, speedups, checks = [], [], {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        root = Path(args.data) if args.data else tmp / "data"
        need: dict[int, int] = {}
        for _, size, n in todo:
            need[size] = max(need.get(size, 0), 2 * n)
        data = {}
        for size, count in need.items():
            data[size], seconds = make_data(root, size, count)
            if seconds:
                print(f"generated frames of {size} px for {count} images in {seconds:.0f} s", file=sys.stderr)
        model, size, _ = todo[0]  # warm-up, untimed: the first command would also pay for a cold page cache
        for ranks in (1, 2):
            port += 1
            run(args, command(args, ranks, model, data[size], tmp / f"warm-{ranks}p.h5", 8, port),
                tmp / f"warm-{ranks}p.log")
        omp = "OMP_NUM_THREADS" in (tmp / "warm-2p.log").read_text()
        for r in range(args.rounds):
            for model, size, n in todo:
                print(f"round {r + 1}/{args.rounds}: {model} at {size} px, {n} and {2 * n} images, 1 process / "
                      "2 ranks ...", file=sys.stderr)
                for count in (n, 2 * n):
                    for ranks in (1, 2):
                        out = tmp / f"{model}-{size}-{count}-{ranks}p.h5"
                        port += 1  # a fresh port per torchrun: no clash with a socket still in TIME_WAIT
                        cmd = command(args, ranks, model, data[size], out, count, port)
                        walls.setdefault((model, size, count, ranks), []).append(
                            run(args, cmd, tmp / f"{out.stem}.log"))
                        loops.setdefault((model, size, count, ranks), []).append(loop_seconds(out.with_suffix("")))
                    if r == 0:
                        checks[(model, size, count)] = same(tmp / f"{model}-{size}-{count}-1p.h5",
                                                            tmp / f"{model}-{size}-{count}-2p.h5")
        controls = {}  # a mismatch: is it the ranks, or the thread count (1 per rank vs 2)?
        for model, size, n in todo:
            for count in (n, 2 * n):
                if checks[(model, size, count)]["equal"]:
                    continue
                out = tmp / f"{model}-{size}-{count}-1p-1thread.h5"
                print(f"{model}: embeddings differ; control: 1 process with OMP_NUM_THREADS=1 ...", file=sys.stderr)
                port += 1
                run(args, command(args, 1, model, data[size], out, count, port), tmp / f"{out.stem}.log",
                    threads=1)
                controls[(model, size, n)] = (count, same(out, tmp / f"{model}-{size}-{count}-2p.h5"),
                                              same(out, tmp / f"{model}-{size}-{count}-1p.h5"))
                break

    threads = {1: f"{os.cpu_count()} (torch default)",
               2: "1 (torchrun set OMP_NUM_THREADS=1)" if omp else "torch default (torchrun set no OMP_NUM_THREADS)"}
    for model, size, n in todo:
        best = {(c, k): min(walls[(model, size, c, k)]) for c in (n, 2 * n) for k in (1, 2)}
        loop = {(c, k): min(loops[(model, size, c, k)]) for c in (n, 2 * n) for k in (1, 2)}
        # images/s without the fixed cost; nan where noise made 2N no slower than N (rerun with more rounds)
        steady = {k: n / (best[(2 * n, k)] - best[(n, k)]) if best[(2 * n, k)] > best[(n, k)] else float("nan")
                  for k in (1, 2)}
        for k in (1, 2):
            label = "1 process" if k == 1 else "torchrun, 2 ranks (gloo)"
            rows.append([f"{model}, {size} px", label, f"{args.workers // k} x {k}", threads[k],
                         f"{best[(n, k)]:.1f} / {best[(2 * n, k)]:.1f}",
                         f"{n / best[(n, k)]:.1f} / {2 * n / best[(2 * n, k)]:.1f}",
                         f"{n / loop[(n, k)]:.1f} / {2 * n / loop[(2 * n, k)]:.1f}", f"{steady[k]:.1f}",
                         f"{best[(2 * n, k)] - loop[(2 * n, k)]:.1f}"])
        speedups.append([f"{model}, {size} px", n,
                         f"{best[(n, 1)] / best[(n, 2)]:.2f} / {best[(2 * n, 1)] / best[(2 * n, 2)]:.2f}",
                         f"{loop[(n, 1)] / loop[(n, 2)]:.2f} / {loop[(2 * n, 1)] / loop[(2 * n, 2)]:.2f}",
                         f"{steady[2] / steady[1]:.2f}",
                         f"N: {verdict(checks[(model, size, n)])}; 2N: {verdict(checks[(model, size, 2 * n)])}"])
        if (model, size, n) in controls:
            count, vs_ranks, vs_two = controls[(model, size, n)]
            speedups.append([f"{model}, {size} px: control", count, "", "", "",
                             f"1 process with OMP_NUM_THREADS=1 vs 2 ranks: {verdict(vs_ranks)}; "
                             f"vs 1 process with 2 threads: {verdict(vs_two)}"])
    print(markdown_table(["case", "setting", "decode workers", "torch threads / process", "wall s (N / 2N)",
                          "images/s, whole command (N / 2N)", "images/s, image loop (N / 2N)",
                          "images/s, 2N - N", "outside the loop s (2N)"], rows))
    print()
    print(markdown_table(["case", "N", "speed-up 2 ranks / 1 process, whole command (N / 2N)",
                          "image loop (N / 2N)", "2N - N", "embeddings identical? 1 process vs 2 ranks "
                          "(numpy array_equal)"], speedups))
    print(f"\n{where}; synthetic frames ({FRAMES} per video, real + {MANIPULATIONS} manipulations), random weights "
          f"(--pretrained none), --precision {args.precision}, --batch-size {args.batch_size}, --chunk-size "
          f"{args.chunk_size} (chunk k goes to rank k mod 2). Each command ran in fresh processes (torchrun: "
          f"launcher + both ranks + rank 0's assembly); best of {args.rounds} interleaved round(s) per cell. "
          "Image loop: first rank into extraction._run_chunks to last rank out (workers' start, decode, forward, "
          "chunk files). 2N - N: N / (wall(2N) - wall(N)). 'outside the loop' = wall - image loop at 2N "
          "(interpreter and torch import, model build, process group, prompt embedding, assembly; torchrun's "
          "launcher). Embeddings compared with numpy.array_equal on the two caches (same rows, same order).")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main()
