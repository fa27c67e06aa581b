"""Extraction throughput and memory, measured side by side in one run (ratios, not absolute goals).

    (a) pipeline: extract_features.py as shipped (DataLoader workers decode, batched bf16 forward, chunks)
    (b) seed loop: one image at a time -- PIL open, preprocess, fp32 forward under no_grad, append
    (c) raw forward: LoadedModel.encode_images on pre-decoded tensors, same precision and batch as (a)

Goals (issue "Benchmarks"): a/b >= 3, a/c >= 0.85, peak RSS growth from N to 4N images < 10 %.
Frames come from clipforensics.synthetic; the model has random weights (--pretrained none).

    .venv/bin/python bench/extract.py                 # ~3 min on 2 cores
    .venv/bin/python bench/extract.py --n 64 --seed-n 8 --rss-model tiny-vit   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import command_line, machine, markdown_table, met, quiet, timed

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import extract_features  # noqa: E402
from clipforensics import extraction  # noqa: E402
from clipforensics.manifest import ManifestSettings, scan  # noqa: E402
from clipforensics.models import ModelSettings, load_model  # noqa: E402
from clipforensics.synthetic import generate  # noqa: E402

MANIPULATIONS = 4  # synthetic default: each real frame has 4 fakes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model for (a), (b), (c)")
    p.add_argument("--size", type=int, default=224, help="side of the generated frames in pixels")
    p.add_argument("--n", type=int, default=256, help="images for (a) and (c)")
    p.add_argument("--seed-n", type=int, default=48, help="images for the slow seed loop (b)")
    p.add_argument("--batch-size", type=int, default=64, help="batch of (a) and (c)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of (a)")
    p.add_argument("--precision", default="auto", help="precision of (a) and (c); auto = bf16 on CPU")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in this process (0: leave)")
    p.add_argument("--rss-model", default="ViT-B-32", help="model of the RSS pair (tiny-vit is ~10x faster)")
    p.add_argument("--rss-n", type=int, default=256, help="RSS is measured at N and 4N images")
    p.add_argument("--skip-rss", action="store_true", help="only the throughput rows")
    p.add_argument("--data", default=None, help="reuse this generated data root (default: a temp dir)")
    p.add_argument("--verbose", action="store_true", help="show progress bars of the code under test")
    p.add_argument("--child", nargs=2, metavar=("DATA", "LIMIT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def pipeline_argv(args, data: str, out: str, model: str, limit: int) -> list[str]:
    return ["--data-root", data, "--out", out, "--model", model, "--pretrained", "none",
            "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precision", args.precision,
            "--limit", str(limit), "--overwrite"]


def make_data(args, root: Path) -> str:
    """Enough generated frames for every measurement (real + 4 fakes per real frame)."""
    if args.data:
        return args.data
    need = max(args.n, args.seed_n, 0 if args.skip_rss else 4 * args.rss_n)
    frames = 8
    videos = max(2, math.ceil(need / (frames * (1 + MANIPULATIONS))))
    seconds, _ = timed(generate, root / "ff", videos=videos, frames=frames, size=args.size)
    print(f"generated {videos * frames * (1 + MANIPULATIONS)} frames of {args.size} px in {seconds:.0f} s",
          file=sys.stderr)
    return str(root / "ff")


def paths(data: str, n: int) -> list[Path]:
    manifest = extraction.spread_rows(scan(ManifestSettings(data_root=data)), n)
    return [Path(data) / p for p in manifest["path"]]


def raw_forward(args, data: str) -> float:
    """(c): images/s of encode_images on batches already decoded and preprocessed in memory."""
    loaded = load_model(ModelSettings(model=args.model, pretrained="none"), "cpu", args.precision)
    images = []
    for path in paths(data, args.n):
        with Image.open(path) as img:
            images.append(loaded.preprocess(img.convert("RGB")))
    batches = [torch.stack(images[i:i + args.batch_size]) for i in range(0, len(images), args.batch_size)]
    loaded.encode_images(batches[0])  # warm-up: oneDNN kernels are created on the first call
    seconds, _ = timed(lambda: [loaded.encode_images(b) for b in batches])
    return len(images) / seconds


def pipeline(args, data: str, out: Path) -> tuple[float, float]:
    """(a): (images/s end to end, images/s without the one-off model construction)."""
    load_seconds = []
    real_load = extraction.load_model

    def load_and_time(*a, **k):  # wrap, do not change: how long building the random model takes
        seconds, loaded = timed(real_load, *a, **k)
        load_seconds.append(seconds)
        return loaded

    extraction.load_model = load_and_time
    try:
        with quiet(not args.verbose):
            seconds, rc = timed(extract_features.main, pipeline_argv(args, data, str(out), args.model, args.n))
    finally:
        extraction.load_model = real_load
    assert rc == 0, "extract_features.main failed (rerun with --verbose)"
    return args.n / seconds, args.n / (seconds - load_seconds[0])


def seed_loop(args, data: str) -> float:
    """(b): the seeds' loop -- one image at a time, fp32, torch.no_grad, embeddings appended to a list."""
    model = load_model(ModelSettings(model=args.model, pretrained="none"), "cpu", "fp32")
    net, preprocess = model.model, model.preprocess
    files = paths(data, args.seed_n + 1)

    def one(path):
        with torch.no_grad():
            image = preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
            return net.encode_image(image).squeeze(0).numpy()

    one(files[0])  # warm-up, in (b)'s favour
    embeddings = []
    seconds, _ = timed(lambda: [embeddings.append(one(p)) for p in files[1:]])
    return len(embeddings) / seconds


def peak_rss(args, data: str, limit: int) -> dict:
    """Peak RSS (MiB) of a fresh process running the pipeline on `limit` images, and of its workers."""
    cmd = [sys.executable, __file__, "--child", data, str(limit), "--model", args.rss_model,
           "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precision", args.precision]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"RSS child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args) -> None:
    data, limit = args.child
    with tempfile.TemporaryDirectory() as tmp, quiet():
        rc = extract_features.main(pipeline_argv(args, data, f"{tmp}/rss.h5", args.model, int(limit)))
    assert rc == 0
    mib = lambda who: resource.getrusage(who).ru_maxrss / 1024  # noqa: E731  (Linux: KiB)
    print(json.dumps({"main": mib(resource.RUSAGE_SELF), "workers": mib(resource.RUSAGE_CHILDREN)}))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    where = machine()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(args, Path(tmp))
        print("(c) raw forward ...", file=sys.stderr)
        c = raw_forward(args, data)
        print("(a) pipeline ...", file=sys.stderr)
        a_all, a = pipeline(args, data, Path(tmp) / "a.h5")
        print("(b) seed loop ...", file=sys.stderr)
        b = seed_loop(args, data)
        rss = None
        if not args.skip_rss:
            print("RSS at N and 4N ...", file=sys.stderr)
            rss = [peak_rss(args, data, args.rss_n), peak_rss(args, data, 4 * args.rss_n)]

    prec = f"{args.precision}{' (bf16)' if args.precision == 'auto' else ''}, batch {args.batch_size}"
    rows = [
        ["(a) pipeline, extract_features.py", f"{args.model}, {prec}, {args.workers} workers", args.n,
         f"{a:.1f} ({a_all:.1f} incl. model build)", "", ""],
        ["(b) seed loop, 1 image at a time", f"{args.model}, fp32, no_grad", args.seed_n, f"{b:.2f}", "", ""],
        ["(c) raw forward, pre-decoded tensors", f"{args.model}, {prec}", args.n, f"{c:.1f}", "", ""],
        ["a / b", "", "", f"{a / b:.2f}", ">= 3", met(a / b, 3)],
        ["a / c", "", "", f"{a / c:.2f} ({a_all / c:.2f} incl. model build)", ">= 0.85", met(a / c, 0.85)],
    ]
    if rss:
        growth = 100 * (rss[1]["main"] / rss[0]["main"] - 1)
        for n, r in zip((args.rss_n, 4 * args.rss_n), rss):
            rows.append([f"peak RSS, {n} images (MiB)", f"{args.rss_model}, {prec}, {args.workers} workers", n,
                         f"{r['main']:.0f} (largest worker {r['workers']:.0f})", "", ""])
        rows.append(["RSS growth N -> 4N (main process)", "", "", f"{growth:+.1f} %", "< 10 %", met(growth, 10, False)])
    print(markdown_table(["measurement", "setting", "images", "images/s (or value)", "goal", "met?"], rows))
    print(f"\n{where}; {args.size} px synthetic frames, random weights. "
          "(a) excludes the one-off model construction; the end-to-end figure includes it.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main()
