"""Caches that stream: peak memory and throughput of writing and reading a cache as it grows (issue 24).

Every step runs in a FRESH child process, which reports its peak RSS (VmHWM, reset at the step's start, and the
peak of any process it forks, e.g. the HDF5 writer) above its RSS before the step (manifest built, imports done):

    assemble   the extraction's assembly of a cache from chunk parts made by tiling one real chunk (os.link:
               no disk for the parts); a `merge` of --shard K/N parts runs this very function
    read       every dataset of that cache read once, one layer at a time
    sweep      fit_heads --layer-sweep (ridge) on a 13-layer ViT-B-32-shaped cache (768-d float16 tokens)
    fit        fit_heads on the final embeddings: ridge, then logreg,svm (the default heads that train)

The goals (issue 24): assembly's peak growth from 100k to 1M rows within 10 % of what it holds at once (one chunk
and HDF5's chunk cache); the sweep's growth from its small to its large size within one layer in float32 of the
rows added (300k x 768 x 4 B = 879 MiB with --full); fit_heads' peak about 2x the float32 rows of the protocol's
splits (train, val and test: what it reads). `--compare DIR` runs the same steps against another copy of the
package (e.g. the code before streaming) beside the code measured (`--code`, default this checkout), so that
"before" and "now" come from the same script on the same machine. The run's largest cache must fit on the
disk of the work folder (`--keep`, or the temp folder): a run that would not is refused before it starts.

    .venv/bin/python bench/scale.py                       # quick: about 3 minutes on 2 cores
    .venv/bin/python bench/scale.py --full                # the issue's sizes: about 11 minutes, 23 GiB of disk
    .venv/bin/python bench/scale.py --compare /tmp/s1/old --only throughput
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    p.add_argument("--full", action="store_true", help="the issue's sizes (assembly to 1M rows, sweep to 400k)")
    p.add_argument("--code", default=str(ROOT), help="package root of the code measured ('now')")
    p.add_argument("--only", default="memory,throughput,sweep,fit", help="which parts (comma list)")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="package root of the code before (e.g. a `git archive` of an older commit), run beside --code")
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
    from clipforensics.studies.layer_sweep import sweep
    try:
        from clipforensics.evaluate.settings import MeasureSettings
    except ImportError:  # code from before the settings modules (--compare)
        from clipforensics.evaluate.evaluation import MeasureSettings
    return _measured(lambda: sweep(a["out"], ("ridge",), ProtocolSettings(), Path(a["run"]),
                                   MeasureSettings(bootstrap=100), overwrite=True))


def step_fit(a: dict) -> dict:
    import fit_heads
    import clipforensics.heads.fit  # noqa: F401  (imported before the step: fit_heads.py imports it after parsing)
    return _measured(lambda: fit_heads.main(["--cache", a["out"], "--heads", a["heads"], "--out", a["run"],
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


def fitted_rows(cache: str) -> dict[str, int]:
    """Rows of each protocol split (train, val, test): what a head fit reads; 'unused' rows are never read."""
    from clipforensics.data.cache import read_cache
    from clipforensics.data.protocol import ProtocolSettings, make_splits
    split = make_splits(read_cache(cache).manifest, ProtocolSettings()).rows["split"]
    return {name: int((split == name).sum()) for name in ("train", "val", "test")}


# ---------------------------------------------------------------------------- parent (the table)

def plan(full: bool) -> dict[str, tuple[tuple[int, int], ...]]:
    """(rows, stored layers) of the caches each part writes, one at a time (each is removed after its step)."""
    return {"memory": ((100_000, 13 if full else 1), (1_000_000, 13 if full else 1)),
            "throughput": ((100_000, 13),),
            "sweep": ((100_000, 13), (400_000, 13)) if full else ((25_000, 13), (100_000, 13)),
            "fit": ((200_000 if full else 100_000, 0),)}


def cache_bytes(rows: int, layers: int) -> int:
    """About what such a cache takes on disk: float16 rows and the manifest's strings."""
    return rows * ((512 + layers * 768) * 2 + 160)


def check_disk(args, work: Path) -> None:
    """Refuse, in one line, a run whose largest cache (plus 10 % and 1 GiB) would not fit in the work folder."""
    need = max(cache_bytes(*size) for part in args.only.split(",") for size in plan(args.full)[part])
    need = int(need * 1.1) + 1024 * MIB
    free = shutil.disk_usage(work).free
    if free < need:
        print(f"error: {work} has {free / 2**30:.1f} GiB free; this run writes caches of up to {need / 2**30:.1f} "
              "GiB (with margin); free space, or pass --keep DIR on a larger disk", file=sys.stderr)
        raise SystemExit(2)


def codes(args) -> list[tuple[str, str]]:
    """(label, package root) of each code measured: the code before (--compare) first, then the code now."""
    return [("before", args.compare), ("now", args.code)] if args.compare else [("now", args.code)]


def cache_at(code: str, tmp: Path, rows: int, layers: int, dim: int = 512, width: int = 768) -> tuple[Path, dict]:
    out = tmp / f"c-{rows}-{layers}.h5"
    if out.exists():
        out.unlink()
    return out, run_step(code, "assemble", out=out, rows=rows, dim=dim, layers=layers, width=width)


def memory_rows(args, tmp: Path) -> list[list[object]]:
    """Assembly (= merge) from 100k to 1M rows: growth beyond the one chunk it holds at once."""
    sizes = plan(args.full)["memory"]
    layers = sizes[0][1]
    out, row_bytes = [], (512 + layers * 768) * 2
    for rows, _ in sizes:
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
    (rows, layers), = plan(args.full)["throughput"]
    out, rates = [], {}
    for name, code in codes(args):
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
    """The sweep at two sizes; its growth against one layer in float32 of the rows added (768 x 4 B a row)."""
    (small, _), (large, _) = sizes = plan(args.full)["sweep"]
    added_layer = (large - small) * 768 * 4 / MIB
    out = []
    for name, code in codes(args):
        peaks = []
        for rows, layers in sizes:
            path, _ = cache_at(code, tmp, rows, layers)
            r = run_step(code, "sweep", out=path, run=tmp / f"sweep-{name}-{rows}")
            out.append([f"{name}: layer sweep (ridge), {rows} rows x 13 layers", r["seconds"], r["peak_mib"],
                        rows * 768 * 4 / MIB, ""])
            peaks.append(r["peak_mib"])
            path.unlink()
        growth = peaks[1] - peaks[0]
        out.append([f"{name}: growth {small} -> {large} / goal: <= one layer in float32 of the {large - small} rows "
                    "added", growth, added_layer, met(growth, added_layer, higher_is_better=False),
                    f"{growth * MIB / (large - small):.0f} B per added row"])
    return out


def fit_rows(args, tmp: Path) -> list[list[object]]:
    """fit_heads on the final embeddings: peak against the float32 rows of the protocol's splits (and of train)."""
    (rows, layers), = plan(args.full)["fit"]
    path, _ = cache_at(args.code, tmp, rows, layers)
    split = fitted_rows(str(path))
    fitted, train = sum(split.values()) * 512 * 4 / MIB, split["train"] * 512 * 4 / MIB
    out = []
    for heads in ("ridge", "logreg,svm"):
        for name, code in codes(args):
            r = run_step(code, "fit", out=path, run=tmp / f"fit-{name}", heads=heads)
            out += [[f"{name}: fit_heads ({heads}), final embeddings, {rows} rows ({split})", r["seconds"],
                     r["peak_mib"], fitted, ""],
                    [f"{name}: peak / float32 rows of the splits (goal: about 2)", r["peak_mib"] / fitted, 2.0,
                     met(r["peak_mib"] / fitted, 2.2, higher_is_better=False),
                     f"{r['peak_mib'] / train:.2f} x train rows"]]
    path.unlink()
    return out


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
    args.compare = args.compare and str(Path(args.compare).resolve())
    unknown = sorted(set(args.only.split(",")) - set(PARTS))
    if unknown:
        print(f"error: --only {unknown[0]!r} is not a part; parts: {', '.join(PARTS)}", file=sys.stderr)
        raise SystemExit(2)
    check_disk(args, Path(args.keep or tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        table = [row for part in args.only.split(",") for row in PARTS[part](args, Path(tmp))]
    print(f"`{command_line()}` on {cpu()}\n")
    print(markdown_table(["step", "seconds (or value)", "peak above start, MiB (or goal)", "data, MiB (or met?)",
                          "cache MiB, rate MiB/s, or note"], table))
    print("\npeak: VmHWM of the step's process or the HDF5 writer it forks, above its RSS before the step "
          "(imports done, manifest built). data: what the step reads or writes; for the sweep, one layer's rows in "
          "float32; for fit_heads, the float32 rows of the protocol's splits (train, val, test).")


if __name__ == "__main__":
    main()
