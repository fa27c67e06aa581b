"""Extraction throughput and memory on this machine, measured side by side in one run.

    (a) pipeline: extract_features.py as shipped with --precision auto (workers decode to uint8, the model's
        device normalises, chunks written); end to end without the one-off model build, and its image loop
    (b) seed loop: one image at a time -- PIL open, open_clip transform, fp32 forward under no_grad
    (c) raw forward: LoadedModel.encode_images on pre-decoded uint8 batches at the fastest precision of (d)
    (d) raw forward at each precision this device runs (CPU: fp32, bf16; CUDA: fp32, fp16, bf16)

Goals (issue 12): auto's precision within 5 % of the fastest in (d); a/c >= 0.85 (on 2 CPU cores);
peak RSS growth from N to 4N images < 10 %.

Every count is sized from a first timing of each precision on one small batch, so the run fits
--budget seconds whatever the hardware (an 8x slower emulated bf16 gets fewer images, not more time).
`auto` is calibrated in a temporary cache directory at the start (its cost is reported), so every run
measures the choice this machine would make today. Frames come from clipforensics.synthetic (256 px crops,
or 1280x720 full frames tiled from them), repeated by hard links to the count needed; random weights.

    .venv/bin/python bench/extract_speed.py                       # ~4 min on 2 cores
    .venv/bin/python bench/extract_speed.py --format jpeg --device cuda --workers 16 --batch-size 256
    .venv/bin/python bench/extract_speed.py --model tiny-vit --budget 20 --skip-rss   # smoke run

--layer-cost measures instead what storing block tokens costs (issue 15; goal <= 1.15): the same command
(a) on the same frames, once for the final embedding only and once with `--layers all`, alternated
(A B, B A, ...) over --rounds, medians compared; and the two caches' size on disk.

    .venv/bin/python bench/extract_speed.py --layer-cost                    # ~3 min on 2 cores
    .venv/bin/python bench/extract_speed.py --layer-cost --device cuda --format jpeg --workers 16 --batch-size 64 \
        --layer-images 20480 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import HelpFormatter, command_line, machine, markdown_table, met, quiet, timed

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import extract_features  # noqa: E402
from clipforensics.data.cache import read_attrs  # noqa: E402
from clipforensics.data.manifest import ManifestSettings, scan  # noqa: E402
from clipforensics.extract import models  # noqa: E402
from clipforensics.extract import run as extraction  # noqa: E402
from clipforensics.extract.chunks import ChunkStore  # noqa: E402
from clipforensics.extract.encoders import load_model  # noqa: E402
from clipforensics.extract.models import LoadedModel  # noqa: E402
from clipforensics.extract.settings import ModelSettings  # noqa: E402
from clipforensics.extract.reader import ImageFiles, collate_images  # noqa: E402
from clipforensics.synthetic.write import generate  # noqa: E402

PROBE_BATCH = 8  # images of the first timing of each precision
CROP = 256  # face crops as DeepfakeBench writes them
FULL = (1280, 720)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model (random weights)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--format", default="png", choices=("png", "jpeg"), help="file format of the frames")
    p.add_argument("--full-frames", action="store_true", help="1280x720 frames instead of 256 px face crops")
    p.add_argument("--budget", type=float, default=200, help="seconds the measurements are sized to (about)")
    p.add_argument("--rounds", type=int, default=0,
                   help="interleaved rounds of (c), (a), (b), the best counts (0: 2); with --layer-cost of the "
                        "pair, medians compared (0: 5)")
    p.add_argument("--batch-size", type=int, default=0, help="batch of (a), (c), (d) (0: 64 on CPU, 256 on CUDA)")
    p.add_argument("--workers", type=int, default=0, help="decode workers of (a) (0: one per core, at most 16)")
    p.add_argument("--max-images", type=int, default=40960, help="cap on the images of one measurement")
    p.add_argument("--compile", action="store_true", help="also time the raw forward under torch.compile")
    p.add_argument("--rss-model", default="tiny-vit", help="model of the RSS pair (memory is about the pipeline)")
    p.add_argument("--rss-n", type=int, default=1024, help="RSS is measured at N and 4N images")
    p.add_argument("--skip-rss", action="store_true", help="only the throughput rows")
    p.add_argument("--layer-cost", action="store_true",
                   help="only time (a) with --layers all against final embeddings only, and the caches' sizes")
    p.add_argument("--layer-images", type=int, default=0,
                   help="images per --layer-cost run (0: sized from a warm-up run to fit --budget)")
    p.add_argument("--verbose", action="store_true", help="show progress bars of the code under test")
    p.add_argument("--child", nargs=3, metavar=("DATA", "LIMIT", "DEVICE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- data


def _tile(files: list[Path], i: int) -> Image.Image:
    """A 1280x720 frame of 15 different crops: full-frame detail (and PNG size) rather than an upscale."""
    canvas = Image.new("RGB", (FULL[0], 3 * CROP))
    for j in range(15):
        with Image.open(files[(7 * i + j) % len(files)]) as im:
            canvas.paste(im.convert("RGB"), ((j % 5) * CROP, (j // 5) * CROP))
    return canvas.crop((0, (3 * CROP - FULL[1]) // 2, FULL[0], (3 * CROP + FULL[1]) // 2))


def make_data(root: Path, fmt: str, full: bool, need: int) -> Path:
    """`need` frames or more in the FF++ layout: a few generated ones, converted, then hard-linked as more
    frames of each video (decoding work is per file; the page cache holds them either way)."""
    base = generate(root / "base", videos=4, frames=4, size=CROP)
    files = sorted(base.rglob("*.png"))
    out = root / "ff"
    suffix = ".jpg" if fmt == "jpeg" else ".png"
    for i, f in enumerate(files):
        target = (out / f.relative_to(base)).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as im:
            img = _tile(files, i) if full else im.convert("RGB")
        img.save(target, quality=95) if fmt == "jpeg" else img.save(target, compress_level=1)
    repeat = max(1, math.ceil(need / len(files)))
    for folder in sorted({f.parent for f in out.rglob("*" + suffix)}):
        frames = sorted(folder.iterdir())
        for k in range(len(frames), len(frames) * repeat):
            os.link(frames[k % len(frames)], folder / f"{k:05d}{suffix}")
    return out


def paths(data: Path, n: int) -> list[str]:
    return extraction.spread_rows(scan(ManifestSettings(data_root=str(data))), n)["path"].tolist()


def decoded(loaded: LoadedModel, data: Path, n: int, batch: int, workers: int) -> list[torch.Tensor]:
    """`n` images as the reader hands them over (uint8), in batches; pinned on CUDA like the pipeline's."""
    dataset = ImageFiles(data, paths(data, n), loaded.pixels, loaded.image_size, uint8=True)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_images)
    cuda = loaded.device.type == "cuda"
    return [images.pin_memory() if cuda else images for images, _, _ in loader]


# ---------------------------------------------------------------- measurements


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_rate(loaded: LoadedModel, pool: list[torch.Tensor], n: int) -> float:
    """images/s of encode_images over `n` images, cycling through the decoded batches in `pool`."""
    loaded.encode_images(pool[0])  # the first call at a shape builds kernels (oneDNN, cuBLAS)
    sync(loaded.device)
    steps = max(1, round(n / len(pool[0])))
    start = time.perf_counter()
    for i in range(steps):
        loaded.encode_images(pool[i % len(pool)])
    sync(loaded.device)
    return steps * len(pool[0]) / (time.perf_counter() - start)


def precisions(device: torch.device) -> list[str]:
    return ["fp32", "bf16"] if device.type == "cpu" else ["fp32", "fp16", "bf16"]


@contextlib.contextmanager
def stopwatch(owner, name: str, totals: dict):
    """Add the wall time of every call of owner.name to totals[name] (wrapping, not changing, it)."""
    real = getattr(owner, name)

    def wrapped(*a, **k):
        start = time.perf_counter()
        result = real(*a, **k)
        totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
        totals.setdefault(f"{name} calls", []).append(time.perf_counter())
        return result
    setattr(owner, name, wrapped)
    try:
        yield
    finally:
        setattr(owner, name, real)


def pipeline_argv(args, data: Path, out: str, model: str, limit: int, device: str) -> list[str]:
    return ["--data-root", str(data), "--out", out, "--model", model, "--pretrained", "none",
            "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precision", "auto",
            "--device", device, "--max-images", str(limit), "--overwrite"]


def pipeline(args, data: Path, out: Path, n: int, device: str, more: tuple[str, ...] = ()) -> dict[str, float]:
    """(a): wall seconds of extract_features.main (with the options `more`) and of its parts."""
    parts: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        for owner, name in ((extraction, "load_agreed"), (extraction, "embed_prompts"),
                            (extraction, "_run_chunks"), (LoadedModel, "encode_images"),
                            (ChunkStore, "save"), (extraction, "_assemble")):
            stack.enter_context(stopwatch(owner, name, parts))
        stack.enter_context(quiet(not args.verbose))
        argv = pipeline_argv(args, data, str(out), args.model, n, device) + list(more)
        seconds, rc = timed(extract_features.main, argv)
    assert rc == 0, "extract_features.main failed (rerun with --verbose)"
    ends = parts.pop("encode_images calls")  # steady state: from the first batch's result to the last's
    steady = (n - args.batch_size) / (ends[-1] - ends[0]) if len(ends) > 1 else float("nan")
    parts = {k: v for k, v in parts.items() if not k.endswith(" calls")}
    return {**parts, "wall": seconds, "work": seconds - parts["load_agreed"], "steady": steady}


def seed_loop(args, data: Path, device: str):
    """(b): a function returning images/s of the seeds' loop -- one image at a time, fp32, torch.no_grad."""
    loaded = load_model(ModelSettings(model=args.model, pretrained="none"), device, "fp32")
    net, preprocess, dev = loaded.model, loaded.preprocess, loaded.device

    def run(n: int) -> float:
        files = [data / p for p in paths(data, n)]

        def one(path):
            with torch.no_grad():
                image = preprocess(Image.open(path).convert("RGB")).unsqueeze(0).to(dev)
                return net.encode_image(image).squeeze(0).cpu().numpy()
        one(files[0])  # warm-up, in (b)'s favour
        seconds, _ = timed(lambda: [one(p) for p in files])
        return len(files) / seconds
    return run


def peak_rss(args, data: Path, limit: int, device: str) -> dict:
    """Peak RSS (MiB) of a fresh process running the pipeline on `limit` images."""
    cmd = [sys.executable, __file__, "--child", str(data), str(limit), device, "--model", args.rss_model,
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"RSS child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))


def child(args) -> None:
    """Run the pipeline once; print peak RSS (MiB) of the whole process and of its image loop alone."""
    data, limit, device = args.child
    loop = {}
    real = extraction._run_chunks

    def image_loop(*a, **k):  # the part whose memory could grow with the number of images
        loop["main"] = _status_kib("VmHWM") / 1024  # peak so far: imports, model build
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # Linux: reset this process's peak RSS (VmHWM) to its current RSS
        result = real(*a, **k)
        loop["peak"] = _status_kib("VmHWM") / 1024
        return result

    with tempfile.TemporaryDirectory() as tmp, quiet(), mock.patch.object(extraction, "_run_chunks", image_loop):
        rc = extract_features.main(pipeline_argv(args, Path(data), f"{tmp}/rss.h5", args.model, int(limit), device))
    assert rc == 0
    # Not ru_maxrss(RUSAGE_SELF): Linux carries the parent's RSS at fork into an exec'd child's ru_maxrss.
    print(json.dumps({"main": max(_status_kib("VmHWM") / 1024, loop["main"]), "loop": loop["peak"],
                      "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def where(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {machine()}"
    return f"CPU {models.cpu_name()} ({models.cpu_bf16_support()[1]}), {machine()}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def settle(args) -> torch.device:
    """The device, and the batch and worker counts its runs use when not given."""
    device = models.resolve_device(args.device)
    args.batch_size = args.batch_size or (256 if device.type == "cuda" else 64)
    args.workers = args.workers or min(16, os.cpu_count() or 1)
    args.rounds = args.rounds or (5 if args.layer_cost else 2)
    return device


# ---------------------------------------------------------------- layer storage (issue 15)

LAYERS_ALL = ("--layers", "all")
LAYER_GOAL = 1.15  # time(--layers all) / time(final embedding only), same run


def layer_cost(args) -> None:
    """extract_features.py on the same frames with and without --layers all, alternated; medians compared.

    A warm-up pair first (kernels, page cache, `auto`'s calibration, which is remembered) sizes the runs
    when --layer-images is 0: then `--rounds` pairs take about --budget seconds."""
    device = settle(args)
    dev, where_text = str(device), where(device)
    sides = {"final only": (), "--layers all": LAYERS_ALL}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"XDG_CACHE_HOME": f"{tmp}/xdg"}):
        tmp = Path(tmp)
        say("warm-up pair ...")
        probe = make_data(tmp / "probe", args.format, args.full_frames, args.batch_size)
        warm = {name: pipeline(args, probe, tmp / "warm.h5", args.batch_size, dev, more)
                for name, more in sides.items()}
        n = args.layer_images
        if not n:
            per_image = sum(w["work"] for w in warm.values()) / args.batch_size  # one image, both sides
            n = int(args.budget / (args.rounds * per_image)) // args.batch_size * args.batch_size
            n = max(args.batch_size, min(args.max_images, n))
        say(f"N = {n} images per run, {args.rounds} rounds of both; generating frames ...")
        data = make_data(tmp / "data", args.format, args.full_frames, n)
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for r in range(args.rounds):  # alternated A B, B A, ...: load and drift hit both sides alike
            for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                say(f"round {r + 1}/{args.rounds}: {name} ...")
                out = tmp / ("layers.h5" if sides[name] else "final.h5")
                result = pipeline(args, data, out, n, dev, sides[name])
                result["MiB"] = out.stat().st_size / 2**20
                runs[name].append(result)
        precision = read_attrs(tmp / "final.h5")["precision"]
    load_end = os.getloadavg()[0]

    def med(name: str, key: str) -> float:
        return statistics.median(x.get(key, 0.0) for x in runs[name])
    base, full = runs["final only"], runs["--layers all"]
    ratio = med("--layers all", "work") / med("final only", "work")
    fmt = lambda xs: ", ".join(f"{x:.3g}" for x in xs)  # noqa: E731
    rows = []
    for name in sides:
        rows.append([f"(a) {name}", n, f"{n / med(name, 'work'):.3g}", f"{med(name, 'work'):.2f}",
                     f"{med(name, '_run_chunks'):.2f}", f"{med(name, 'encode_images'):.2f}",
                     f"{med(name, 'save'):.2f}", f"{med(name, '_assemble'):.2f}", f"{med(name, 'MiB'):.1f}",
                     f"work s: {fmt(x['work'] for x in runs[name])}"])
    same_round = [b["work"] / a["work"] for a, b in zip(base, full)]
    rows.append(["ratio --layers all / final only", "", "", f"**{ratio:.3f}**",
                 f"{med('--layers all', '_run_chunks') / med('final only', '_run_chunks'):.3f}",
                 f"{med('--layers all', 'encode_images') / med('final only', 'encode_images'):.3f}", "", "",
                 f"{med('--layers all', 'MiB') / med('final only', 'MiB'):.1f}",
                 f"goal <= {LAYER_GOAL}: {met(ratio, LAYER_GOAL, False)}; same round: {fmt(same_round)}"])
    print(markdown_table(["run", "images", "images/s", "work s", "image loop s", "forward s (encode_images)",
                          "chunk saves s", "assemble s", "cache MiB", "note"], rows))
    frames = f"{'1280x720' if args.full_frames else f'{CROP} px'} {args.format.upper()}"
    print(f"\n{where_text}, {load_end:.1f} at end; {args.model}, random weights, --precision auto "
          f"= {precision}, batch {args.batch_size}, {args.workers} workers, {frames} synthetic frames. Medians of "
          f"{args.rounds} rounds, each running both sides (order alternated). work = the whole command without "
          "the one-off model build; image loop = decode, forward (with hooks), gathering chunks; forward = "
          "encode_images calls (copy, normalise, forward, block tokens, results back); chunk saves = the "
          "writer thread's time, overlapping the loop; assemble = the cache file written from the chunks.")
    print(f"\ncommand: `{command_line()}`")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.layer_cost:
        return layer_cost(args)
    device = settle(args)
    dev = str(device)
    where_text = where(device)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"XDG_CACHE_HOME": f"{tmp}/xdg"}):
        tmp = Path(tmp)
        say("first timings ...")
        loaded = {p: load_model(ModelSettings(model=args.model, pretrained="none"), dev, p) for p in precisions(device)}
        probe = make_data(tmp / "probe", args.format, args.full_frames, PROBE_BATCH)
        decode_s, small = timed(decoded, loaded["fp32"], probe, PROBE_BATCH, PROBE_BATCH, 0)
        decode_s /= PROBE_BATCH  # seconds per image in one process
        first = {p: forward_rate(m, small, PROBE_BATCH) for p, m in loaded.items()}
        fp32 = loaded["fp32"]  # on a CPU, the fp32 model calibration times (on CUDA, auto needs no timing)
        calibration, choice = timed(models.resolve_precision, "auto", device, args.model,
                                    lambda: models.calibrate_cpu(fp32.model.visual, fp32.image_size))
        auto = choice.precision

        def count(rate: float, share: float, low: int) -> int:
            """Images that take about `share` of the budget at `rate`, in whole batches."""
            n = int(rate * share * args.budget) // args.batch_size * args.batch_size
            return max(low, min(args.max_images, n))
        n_a = count(min(first[auto], args.workers / decode_s), 0.12, args.batch_size)  # decode may bound it
        n_d = {p: count(first[p], 0.05, PROBE_BATCH) for p in loaded}
        n_b = max(8, min(512, int(0.04 * args.budget / (decode_s + 1 / first["fp32"]))))
        need = max(n_a, n_b, 0 if args.skip_rss else 4 * args.rss_n)
        say(f"first timings (img/s): {', '.join(f'{p} {r:.1f}' for p, r in first.items())}, decode "
            f"{1 / decode_s:.0f} per process; auto -> {auto}; "
            f"N = {n_a} for (a)/(c), {n_b} for (b); generating {need} frames ...")
        data = make_data(tmp / "data", args.format, args.full_frames, need)
        pool = decoded(loaded[auto], data, min(n_a, 8 * args.batch_size), args.batch_size, args.workers)
        d = {}
        for p, m in loaded.items():
            say(f"(d) raw forward {p} on {n_d[p]} images ...")
            d[p] = forward_rate(m, pool if len(pool[0]) <= n_d[p] else [b[:n_d[p]] for b in pool[:1]], n_d[p])
        best = max(d, key=d.get)
        compiled = None
        if args.compile:
            say("(c') torch.compile ...")
            m = loaded[best]
            m.model.visual = torch.compile(m.model.visual)
            build, _ = timed(m.encode_images, pool[0])
            compiled = (forward_rate(m, pool, n_a), build)
            m.model.visual = m.model.visual._orig_mod
        seed = seed_loop(args, data, dev)
        a, b, c = [], [], []
        for r in range(args.rounds):  # interleaved, so background load hits (a), (b), (c) alike
            say(f"round {r + 1}/{args.rounds}: (c) raw forward {best}, (a) pipeline, (b) seed loop ...")
            c.append(forward_rate(loaded[best], pool, n_a))
            a.append(pipeline(args, data, tmp / "a.h5", n_a, dev))
            b.append(seed(n_b))
        del loaded, pool
        rss = None
        if not args.skip_rss:
            say("RSS at N and 4N ...")
            rss = [peak_rss(args, data, args.rss_n, dev), peak_rss(args, data, 4 * args.rss_n, dev)]

    ends = [n_a / x["work"] for x in a]
    loops = [n_a / x["_run_chunks"] for x in a]
    i = max(range(len(a)), key=lambda k: ends[k])
    a_end, a_loop, parts = ends[i], loops[i], a[i]
    b_best, c_best = max(b), max(c)
    fmt = lambda xs: ", ".join(f"{x:.3g}" for x in xs)  # noqa: E731
    frames = f"{'1280x720' if args.full_frames else f'{CROP} px'} {args.format.upper()}"
    setting = f"{args.model}, batch {args.batch_size}"
    rows = [
        ["(a) pipeline, extract_features.py", f"{setting}, auto = {auto}, {args.workers} workers", n_a,
         f"{a_end:.3g}", "", "", f"rounds: {fmt(ends)}; whole command without model build"],
        ["(a) its image loop (decode, forward, chunk writes)", "", n_a, f"{a_loop:.3g}", "", "",
         f"rounds: {fmt(loops)}"],
        ["(a) its steady state (first batch out to last)", "", n_a, f"{max(x['steady'] for x in a):.3g}", "", "",
         f"rounds: {fmt(x['steady'] for x in a)}; without worker start-up and first-batch latency"],
        ["(b) seed loop, 1 image at a time", f"{args.model}, fp32, no_grad", n_b, f"{b_best:.3g}", "", "",
         f"rounds: {fmt(b)}"],
        ["(c) raw forward, fastest precision", f"{setting}, {best}, decoded uint8", n_a, f"{c_best:.3g}", "", "",
         f"rounds: {fmt(c)}"],
    ]
    rows += [[f"(d) raw forward, {p}", setting, n_d[p], f"{d[p]:.3g}", "", "",
              "fastest" if p == best else f"{d[p] / d[best]:.2f} of {best}"] for p in d]
    if compiled:
        rows.append(["(c') raw forward under torch.compile", f"{setting}, {best}", n_a, f"{compiled[0]:.3g}", "", "",
                     f"{compiled[0] / c_best:.2f} of (c); first call (compiling) {compiled[1]:.0f} s"])
    rows += [
        ["auto's precision / fastest, raw forward", f"auto = {auto}: {choice.reason}", "",
         f"{d[auto] / d[best]:.2f}", ">= 0.95", met(d[auto] / d[best], 0.95),
         f"auto resolved in {calibration:.1f} s (calibration, once per machine and model)"],
        ["a / c (whole command)", "", "", f"{a_end / c_best:.2f}", ">= 0.85", met(a_end / c_best, 0.85),
         f"same round: {fmt(e / ci for e, ci in zip(ends, c))}"],
        ["a / c (image loop)", "", "", f"{a_loop / c_best:.2f}", "", "",
         f"same round: {fmt(lp / ci for lp, ci in zip(loops, c))}"],
        ["a / c (steady state)", "", "", f"{max(x['steady'] for x in a) / c_best:.2f}", "", ""],
        ["a / b", "", "", f"{a_end / b_best:.2f}", "", ""],
        ["(a) forward share of the image loop", "", "", f"{parts['encode_images'] / parts['_run_chunks']:.2f}", "", "",
         "encode_images (copy, normalise, forward, result back) / loop wall"],
        ["(a) wall s: model build / image loop / prompts / rest", "", n_a,
         f"{parts['load_agreed']:.1f} / {parts['_run_chunks']:.1f} / {parts['embed_prompts']:.1f} / "
         f"{parts['work'] - parts['_run_chunks'] - parts['embed_prompts']:.1f}", "", "", "best round"],
    ]
    if rss:
        for n, r in zip((args.rss_n, 4 * args.rss_n), rss):
            rows.append([f"peak RSS, {n} images (MiB)", f"{args.rss_model}, {args.workers} workers", n,
                         f"{r['main']:.0f} (image loop {r['loop']:.0f})", "", "",
                         f"largest worker {r['workers']:.0f} incl. pages shared with main"])
        growth = {k: 100 * (rss[1][k] / rss[0][k] - 1) for k in ("main", "loop")}
        rows.append(["RSS growth N -> 4N, main process (image loop)", "", "",
                     f"{growth['main']:+.1f} % ({growth['loop']:+.1f} %)", "< 10 %",
                     met(max(growth.values()), 10, False)])
    print(markdown_table(["measurement", "setting", "images", "images/s (or value)", "goal", "met?", "note"],
                         [row + [""] * (7 - len(row)) for row in rows]))
    print(f"\n{where_text}; {frames} synthetic frames, random weights. Best of {args.rounds} interleaved rounds. "
          "(a) and (c) exclude the one-off model build and kernel creation; (d) is timed once each. Peak RSS: "
          "VmHWM of a fresh child process running (a); 'image loop' is the peak during the loop alone.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main()
