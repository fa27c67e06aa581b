"""Caches that stream: peak memory and throughput of writing and reading a cache as it grows (issue 24).

Every step runs in a FRESH child process, which reports its peak RSS (VmHWM, reset at the step's start, and the
peak of any process it forks, e.g. the HDF5 writer) above its RSS before the step (manifest built, imports done):

    assemble   the extraction's assembly of a cache from chunk parts made by tiling one real chunk (os.link:
               no disk for the parts); a `merge` of --shard K/N parts runs this very function
    read       every dataset of that cache read once, one layer at a time
    sweep      fit_heads --layer-sweep (ridge) on a 13-layer ViT-B-32-shaped cache (768-d float16 tokens)
    fit        fit_heads (ridge) on the final embeddings

`--code DIR` runs the steps against another copy of the package (e.g. the code before streaming), so that
"today's" throughput is measured by the same script on the same machine.

    .venv/bin/python bench/scale.py                       # quick: a few minutes on 2 cores
    .venv/bin/python bench/scale.py --full                # the issue's sizes: 1M-row assembly, 400k-row sweep
    .venv/bin/python bench/scale.py --code /tmp/s1/old --only throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sys.path, HF_HUB_OFFLINE; stdlib only)
from common import HelpFormatter, ROOT, command_line, markdown_table, met

MIB = 1024 * 1024
CHUNK = 1000  # rows of one tiled extraction chunk
CLASSES = ("Real_youtube", "FaceSwap", "NeuralTextures")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--full", action="store_true", help="the issue's sizes (assembly to 1M rows, sweep to 400k)")
    p.add_argument("--code", default=str(ROOT), help="package root to measure (a copy of older code, say)")
    p.add_argument("--only", default="memory,throughput,sweep,fit", help="which parts (comma list)")
    p.add_argument("--compare", default=None, help="package root of the code before, timed beside --code")
    p.add_argument("--keep", default=None, help="work here instead of a temp dir")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- child (measured process)

def _kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def manifest_of(rows: int, frames: int = 100):
    """FF++-shaped manifest: videos of `frames` frames cycling over CLASSES, fakes named target_source (swapped
    pairs, so that the protocol's groups of videos stay small)."""
    import numpy as np
    import pandas as pd
    v = np.arange(rows) // frames
    cls = np.array(CLASSES)[v % len(CLASSES)]
    k = v // len(CLASSES)
    target = pd.Series(k).map("{:05d}".format)
    source = pd.Series(np.minimum(k ^ 1, k.max())).map("{:05d}".format).where(cls != CLASSES[0], "")  # FF++ pairs
    vid = target.where(cls == CLASSES[0], target + "_" + source)
    video = pd.Series(cls) + "/" + vid
    path = video + "/" + pd.Series(np.arange(rows) % frames).map("{:03d}.png".format)
    return pd.DataFrame({"path": path, "label": (cls != CLASSES[0]).astype(np.int8), "manipulation": cls,
                         "video": video, "target": target, "source": source})


def _attrs(manifest, dim: int) -> dict:
    from clipforensics.data.manifest import manifest_hash
    return {"model": "bench-scale", "pretrained": "none", "weights_fingerprint": "bench", "init_seed": 0,
            "image_size": 224, "precision": "fp16", "manifest_hash": manifest_hash(manifest), "crops": None,
            "data_root": "/nonexistent", "embed_dim": dim}


def tiled_parts(out: Path, rows: int, dim: int, layers: int, width: int):
    """The chunk parts of `rows` rows: one real chunk saved by ChunkStore, hard-linked as every other chunk."""
    import numpy as np
    from clipforensics.extract.chunks import ChunkStore
    store = ChunkStore(out)
    store.dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    extras = {f"layers/{k}": rng.normal(size=(CHUNK, width)).astype(np.float16) for k in range(layers)}
    store.save(0, rng.normal(size=(CHUNK, dim)).astype(np.float16), [""] * CHUNK, extras)
    for k in range(1, rows // CHUNK):
        os.link(store.path(0), store.path(k))
        if layers:
            os.link(store.extras_path(0), store.extras_path(k))
    return store, rows // CHUNK


def step_assemble(a: dict) -> dict:
    import numpy as np
    from clipforensics.extract.chunks import assemble
    out = Path(a["out"])
    store, n_chunks = tiled_parts(out, a["rows"], a["dim"], a["layers"], a["width"])
    manifest = manifest_of(a["rows"])
    stats = np.zeros((a["rows"], 2), np.int64)
    attrs = _attrs(manifest, a["dim"])
    return _measured(lambda: assemble(out, store, n_chunks, manifest, attrs, dict, stats))


def step_read(a: dict) -> dict:
    import numpy as np
    from clipforensics.data.cache import read_cache

    def read() -> int:
        cache = read_cache(a["out"], layers=True)
        total = np.asarray(cache.embeddings).nbytes
        for k in sorted(cache.layers):
            total += np.asarray(cache.layers[k]).nbytes
        return total
    return _measured(read)


def step_sweep(a: dict) -> dict:
    from clipforensics.data.protocol import ProtocolSettings
    from clipforensics.evaluate.evaluation import MeasureSettings
    from clipforensics.studies.layer_sweep import sweep
    return _measured(lambda: sweep(a["out"], ("ridge",), ProtocolSettings(), Path(a["run"]),
                                   MeasureSettings(bootstrap=100), overwrite=True))


def step_fit(a: dict) -> dict:
    import fit_heads
    return _measured(lambda: fit_heads.main(["--cache", a["out"], "--heads", "ridge", "--out", a["run"],
                                             "--overwrite"]))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _watch_writer() -> list[int]:
    """[RSS of the stage when it forks the HDF5 writer, the writer's own growth] (KiB), filled in by wrappers of
    clipforensics.data's in_child and _write_file (the forked writer shares the stage's pages: its RSS counts
    them, so only what it adds is added). Code without a forked writer leaves them 0."""
    from clipforensics.data import cache as cache_mod
    seen = [0, 0]
    if not hasattr(cache_mod, "in_child"):
        return seen
    in_child, write_file = cache_mod.in_child, cache_mod._write_file
    pipe = os.pipe()

    def forking(work, path):
        seen[0] = _kib("VmRSS")
        in_child(work, path)
        seen[1] = int(os.read(pipe[0], 64))

    def writing(*a):
        start = _kib("VmRSS")
        _reset_peak()
        write_file(*a)
        os.write(pipe[1], str(_kib("VmHWM") - start).encode())
    cache_mod.in_child, cache_mod._write_file = forking, writing
    return seen


def _measured(fn) -> dict:
    """Seconds, result, and peak RSS above the RSS at entry (this process, or it and the writer it forks)."""
    writer = _watch_writer()
    before = _kib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = max(_kib("VmHWM"), writer[0] + writer[1])
    return {"seconds": seconds, "peak_mib": (peak - before) / 1024, "rss_before_mib": before / 1024,
            "writer_mib": writer[1] / 1024, "result": result if isinstance(result, int) else None}


STEPS = {"assemble": step_assemble, "read": step_read, "sweep": step_sweep, "fit": step_fit}


def child(spec: str) -> None:
    a = json.loads(spec)
    sys.path.insert(0, a["code"])
    os.environ["PYTHONPATH"] = a["code"]
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        report = STEPS[a["step"]](a)
    print(json.dumps(report))


def run_step(code: str, step: str, **a) -> dict:
    spec = json.dumps({"code": code, "step": step, **{k: str(v) if isinstance(v, Path) else v for k, v in a.items()}})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True,
                          cwd=code, env={**os.environ, "PYTHONPATH": code})
    if done.returncode:
        raise SystemExit(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fitted_rows(cache: str) -> int:
    """Rows in a protocol split (train, val or test): what a head fit reads."""
    from clipforensics.data.cache import read_cache
    from clipforensics.data.protocol import ProtocolSettings, make_splits
    return int(make_splits(read_cache(cache).manifest, ProtocolSettings()).rows["split"].notna().sum())


# ---------------------------------------------------------------------------- parent (the table)

def cache_at(code: str, tmp: Path, rows: int, layers: int, dim: int = 512, width: int = 768) -> tuple[Path, dict]:
    out = tmp / f"c-{rows}-{layers}.h5"
    if out.exists():
        out.unlink()
    return out, run_step(code, "assemble", out=out, rows=rows, dim=dim, layers=layers, width=width)


def memory_rows(args, tmp: Path) -> list[list[object]]:
    """Assembly (= merge) from 100k to 1M rows: growth beyond the one chunk it holds at once."""
    sizes, layers = ((100_000, 1_000_000), 13) if args.full else ((100_000, 1_000_000), 1)
    out, row_bytes = [], (512 + layers * 768) * 2
    for rows in sizes:
        path, r = cache_at(args.code, tmp, rows, layers)
        out.append([f"assembly = merge, {rows} rows, {layers} layer(s)", r["seconds"], r["peak_mib"],
                    rows * row_bytes / MIB, path.stat().st_size / MIB])
        path.unlink()
    held = CHUNK * row_bytes / MIB + 64  # the chunk being copied, plus HDF5's chunk cache
    growth = out[1][2] - out[0][2]
    out.append(["growth 100k -> 1M (MiB) / goal: <= 10 % of the chunk held + its cache", growth, held * 1.1,
                met(growth, held * 1.1, higher_is_better=False), ""])
    return out


def throughput_rows(args, tmp: Path) -> list[list[object]]:
    rows, layers, out = 100_000, 13, []
    codes = [("before", args.compare)] if args.compare else []
    rates = {}
    for name, code in [*codes, ("now", args.code)]:
        path, w = cache_at(code, tmp, rows, layers)
        r = run_step(code, "read", out=path)
        size = path.stat().st_size / MIB
        rates[name] = (size / w["seconds"], r["result"] / MIB / r["seconds"])
        out.append([f"{name}: write (assemble) {rows} rows x 13 layers", w["seconds"], w["peak_mib"], size,
                    rates[name][0]])
        out.append([f"{name}: read every dataset", r["seconds"], r["peak_mib"], r["result"] / MIB, rates[name][1]])
        path.unlink()
    if "before" in rates:
        for i, what in enumerate(("write", "read")):
            ratio = rates["now"][i] / rates["before"][i]
            out.append([f"{what} throughput now / before (goal >= 0.9)", ratio, "", met(ratio, 0.9), ""])
    return out


def sweep_rows(args, tmp: Path) -> list[list[object]]:
    sizes = (100_000, 400_000) if args.full else (25_000, 100_000)
    out = []
    for rows in sizes:
        path, _ = cache_at(args.code, tmp, rows, 13)
        r = run_step(args.code, "sweep", out=path, run=tmp / f"sweep-{rows}")
        out.append([f"layer sweep (ridge), {rows} rows x 13 layers", r["seconds"], r["peak_mib"],
                    rows * 768 * 4 / MIB, ""])
        path.unlink()
    growth, one_layer = out[1][2] - out[0][2], out[1][3]
    out.append([f"growth {sizes[0]} -> {sizes[1]} / goal: <= one layer in float32", growth, one_layer,
                met(growth, one_layer, higher_is_better=False), ""])
    return out


def fit_rows(args, tmp: Path) -> list[list[object]]:
    rows = 200_000 if args.full else 100_000
    path, _ = cache_at(args.code, tmp, rows, 0)
    r = run_step(args.code, "fit", out=path, run=tmp / "fit")
    fitted = fitted_rows(str(path)) * 512 * 4 / MIB
    path.unlink()
    return [[f"fit_heads (ridge), final embeddings, {rows} rows", r["seconds"], r["peak_mib"], fitted, ""],
            ["peak / float32 rows fitted (goal: about 2)", r["peak_mib"] / fitted, 2.0,
             met(r["peak_mib"] / fitted, 2.2, higher_is_better=False), ""]]


PARTS = {"memory": memory_rows, "throughput": throughput_rows, "sweep": sweep_rows, "fit": fit_rows}


def cpu() -> str:
    with open("/proc/cpuinfo") as fh:
        text = fh.read()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f} " in text.replace("\n", " ")]
    return f"{name} ({os.cpu_count()} cores; {', '.join(flags)})"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.child)
        return
    args.code = str(Path(args.code).resolve())
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        table = [row for part in args.only.split(",") for row in PARTS[part](args, Path(tmp))]
    print(f"`{command_line()}` on {cpu()}\n")
    print(markdown_table(["step", "seconds", "peak above start (MiB)", "data (MiB)", "cache MiB / rate MiB/s"], table))
    print("\npeak: VmHWM of the step's process or the HDF5 writer it forks, above its RSS before the step "
          "(manifest built). data: what the step reads or writes; for the sweep, one layer's rows in float32.")


if __name__ == "__main__":
    main()
