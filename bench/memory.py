"""Peak memory of the heads stage and of the evaluator as the cache grows (10k, 50k, 100k rows by default).

For each size a synthetic cache is written by common.make_cache (float16 embeddings, videos of --frames
frames, Real_youtube + --manipulations fakes, every prompt set), then, each in a FRESH child process:

    fit_heads.py --cache C --heads all --out R                    (heads stage)
    evaluate.py R/<head>/scores.csv ... --bootstrap 1000 --out E   (evaluator, every head's scores)

The child runs the script's own main() (imports first, so their RSS is the baseline) and writes its
peak RSS (VmHWM of /proc/self/status) at exit. It also wraps the stage's main functions (file:function)
and records, per call, the peak RSS above the RSS at entry (VmHWM is reset on entry through
/proc/self/clear_refs), so a part that grows faster than the data is named in the profile table.

The claim under test: peak RSS grows by much less than 10x when rows grow 10x -- the baseline is the
imported libraries -- and what does grow, as a multiple of the embeddings themselves.

    .venv/bin/python bench/memory.py                           # ~1.5 min on 2 cores
    .venv/bin/python bench/memory.py --rows 4000,8000,16000 --frames 20 --manipulations 4 --bootstrap 100   # smoke
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

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE; stdlib only: the child's baseline stays the script's)
from common import (HelpFormatter, ROOT, cache_arguments, command_line, make_cache, markdown_table, met, protocol,
                    timed)

MIB = 1024 * 1024


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--rows", default="10000,50000,100000",
                   help="cache sizes in frames (comma list; the last two show whether growth is linear)")
    cache_arguments(p, manipulations=2, note="more leave 10k rows with no validation videos")
    p.add_argument("--top", type=int, default=12, help="rows of the per-function profile table")
    p.add_argument("--keep", default=None, help="write caches, runs and reports here instead of a temp dir")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- child (measured process)

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _reset_peak() -> bool:
    """Linux: set this process's VmHWM back to its current RSS. False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakTracker:
    """Per wrapped function: the highest RSS reached during a call minus the RSS at its entry.

    VmHWM is reset on each entry; before every reset the current VmHWM is folded into every active
    (enclosing) call and into the process peak, so nesting and the overall peak stay exact.
    """

    def __init__(self) -> None:
        self.peak_kib = _status_kib("VmHWM")
        self.stack: list[list] = []
        self.calls: dict[str, dict[str, float]] = {}
        self.can_reset = _reset_peak()

    def fold(self) -> None:
        hwm = _status_kib("VmHWM")
        self.peak_kib = max(self.peak_kib, hwm)
        for frame in self.stack:
            frame[0] = max(frame[0], hwm)

    def wrap(self, module, attr: str, label=None) -> None:
        real = getattr(module, attr)
        where = f"{module.__name__.replace('.', '/')}.py:{attr}"

        def wrapped(*a, **k):
            self.fold()
            _reset_peak()
            entry = _status_kib("VmRSS")
            frame = [entry]
            self.stack.append(frame)
            start = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                seconds = time.perf_counter() - start
                self.fold()
                assert self.stack.pop() is frame  # calls nest: last in, first out
                key = where + (f"({label(*a, **k)})" if label else "")
                rec = self.calls.setdefault(key, {"extra": 0.0, "entry": 0.0, "n": 0, "seconds": 0.0})
                if (frame[0] - entry) / 1024 >= rec["extra"]:
                    rec["extra"], rec["entry"] = (frame[0] - entry) / 1024, entry / 1024
                rec["n"] += 1
                rec["seconds"] += seconds
        setattr(module, attr, wrapped)


def _instrument(script: str, tracker: PeakTracker) -> None:
    """Wrap the stage's steps where the stage function looks them up (module globals)."""
    if script == "fit_heads.py":
        from clipforensics.heads import fit
        for attr in ("read_cache", "make_splits", "features", "scores_with_tests", "write_scores", "save_head"):
            tracker.wrap(fit, attr)
        tracker.wrap(fit, "fit_head", label=lambda name, *a, **k: name)
    elif script == "evaluate.py":
        from clipforensics.evaluate import evaluation
        from clipforensics.measure import metrics
        for attr in ("load_run", "write_outputs", "write_report"):
            tracker.wrap(evaluation, attr)
        tracker.wrap(evaluation, "evaluate_run")
        tracker.wrap(metrics, "bootstrap_replicates")
        tracker.wrap(metrics, "video_scores")


def child(script: str, out_json: str, argv: list[str]) -> None:
    """Import the script (baseline), then run its main(argv) like `python script argv` would; write peaks."""
    import runpy
    start = time.perf_counter()
    sys.argv = [script, *argv]
    module = runpy.run_path(str(ROOT / script), run_name="bench_memory_child")  # imports, defines main()
    imports = {"rss": _status_kib("VmRSS") / 1024, "hwm": _status_kib("VmHWM") / 1024,
               "seconds": time.perf_counter() - start}
    tracker = PeakTracker()
    _instrument(script, tracker)
    start = time.perf_counter()
    try:
        rc = module["main"](argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    tracker.fold()
    result = {"imports": imports, "peak": tracker.peak_kib / 1024, "rc": rc, "can_reset": tracker.can_reset,
              "seconds": time.perf_counter() - start, "calls": tracker.calls}
    Path(out_json).write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0 if rc in (0, None) else 1)  # the peak is written: skip interpreter teardown


def run_child(script: str, argv: list[str], out_json: Path, log: Path) -> dict:
    """A fresh interpreter for one stage; its output goes to `log`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", script, str(out_json), *argv]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with open(log, "w") as fh:
        seconds, done = timed(subprocess.run, cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode or not out_json.exists():
        raise SystemExit(f"{script} child failed (rc {done.returncode}):\n{log.read_text()[-3000:]}")
    result = json.loads(out_json.read_text())
    result["wall"] = seconds
    return result


# ---------------------------------------------------------------------------- parent

def measure(args, rows: int, tmp: Path) -> dict:
    from clipforensics.data.cache import read_cache  # imported here only: the child's baseline stays the script's
    from clipforensics.heads.features import split_rows

    cache = tmp / f"cache-{rows}.h5"
    build, _ = timed(make_cache, cache, rows, args.frames, args.dim, args.manipulations, args.signal, args.seed)
    print(f"{rows} rows: cache written in {build:.1f} s", file=sys.stderr)
    data = read_cache(cache)
    splits = split_rows(data, protocol(args))["split"].value_counts().to_dict()
    emb = data.embeddings.nbytes / MIB
    manifest = data.manifest.memory_usage(deep=True).sum() / MIB
    del data
    run, report = tmp / f"run-{rows}", tmp / f"report-{rows}"
    fit = run_child("fit_heads.py", ["--cache", str(cache), "--heads", args.heads, "--out", str(run), "--overwrite",
                                     "--train-fakes", args.train_fakes, "--test-fakes", args.test_fakes],
                    tmp / f"fit-{rows}.json", tmp / f"fit-{rows}.log")
    print(f"{rows} rows: fit_heads.py peak {fit['peak']:.0f} MiB in {fit['wall']:.1f} s", file=sys.stderr)
    scores = sorted(str(p) for p in run.glob("*/scores.csv"))
    ev = run_child("evaluate.py", [*scores, "--out", str(report), "--bootstrap", str(args.bootstrap)],
                   tmp / f"eval-{rows}.json", tmp / f"eval-{rows}.log")
    print(f"{rows} rows: evaluate.py peak {ev['peak']:.0f} MiB in {ev['wall']:.1f} s", file=sys.stderr)
    return {"rows": rows, "emb": emb, "manifest": manifest, "cache_file": cache.stat().st_size / MIB,
            "scores_files": len(scores), "scores_mib": sum(Path(s).stat().st_size for s in scores) / MIB,
            "scored_rows": splits.get("val", 0) + splits.get("test", 0), "test_rows": splits.get("test", 0),
            "train_rows": splits.get("train", 0), "val_rows": splits.get("val", 0),
            "fit": fit, "eval": ev}


def _fmt_sizes(values: list[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["--child"]:  # python bench/memory.py --child SCRIPT OUT_JSON ARGS...
        return child(sys.argv[2], sys.argv[3], sys.argv[4:])
    args = parse_args(argv)
    sizes = sorted(int(r) for r in args.rows.split(","))
    if len(sizes) < 2:
        raise SystemExit("--rows needs at least two sizes")
    from common import machine
    where = machine()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        results = [measure(args, n, tmp) for n in sizes]

    stages = (("fit", f"`fit_heads.py --heads {args.heads}`"),
              ("eval", f"`evaluate.py` <all scores> `--bootstrap {args.bootstrap}`"))
    per_size = []
    for r in results:
        for key, what in stages:
            s = r[key]
            data = (f"{r['emb']:.1f} emb f16 + {r['manifest']:.0f} manifest; train {r['train_rows']}, "
                    f"val {r['val_rows']}, test {r['test_rows']}" if key == "fit" else
                    f"{r['scores_files']} files x {r['scored_rows']} rows, {r['scores_mib']:.1f} CSV")
            per_size.append([what, r["rows"], data, f"{s['imports']['rss']:.0f}", f"{s['peak']:.0f}",
                             f"{s['peak'] - s['imports']['rss']:.0f}",
                             f"{(s['peak'] - s['imports']['rss']) / r['emb']:.1f}", f"{s['wall']:.1f}"])

    lo, mid, hi = results[0], results[-2], results[-1]
    factor, last = hi["rows"] / lo["rows"], hi["rows"] / mid["rows"]
    growth = []
    for key, what in stages:
        work = [r[key]["peak"] - r[key]["imports"]["rss"] for r in results]
        d_peak = hi[key]["peak"] - lo[key]["peak"]
        d_emb = hi["emb"] - lo["emb"]
        growth.append([what, _fmt_sizes([r[key]["peak"] for r in results]),
                       f"x{hi[key]['peak'] / lo[key]['peak']:.2f}", met(hi[key]["peak"] / lo[key]["peak"],
                                                                         factor / 3, False),
                       f"x{work[-1] / work[0]:.1f}", f"x{work[-1] / work[-2]:.2f} (rows x{last:.2g})",
                       f"{d_peak:+.0f}", f"{d_emb:+.0f}", f"{d_peak / d_emb:.1f}", f"{d_peak - d_emb:+.0f}"])

    profile = []
    for key, _ in stages:
        names = sorted(hi[key]["calls"], key=lambda n: -hi[key]["calls"][n]["extra"])[:args.top]
        for name in names:
            extra = [r[key]["calls"].get(name, {"extra": float("nan")})["extra"] for r in results]
            ratio = extra[-1] / extra[-2] if extra[-2] > 1 else float("nan")
            flag = ("**grows faster than the rows**" if ratio == ratio and ratio > 1.3 * last and extra[-1] > 50
                    else "capped" if ratio == ratio and ratio < 1.15 and extra[-1] > 50 else "")
            profile.append([f"`{name}`", int(hi[key]["calls"][name]["n"]), _fmt_sizes(extra),
                            f"x{ratio:.2f}" if ratio == ratio else "-", f"{extra[-1] / hi['emb']:.1f}",
                            f"{hi[key]['calls'][name]['seconds']:.1f}", flag])

    names = " / ".join(str(r["rows"]) for r in results)
    print(markdown_table(["stage", "rows", "data (MiB)", "RSS after imports (MiB)", "peak RSS (MiB)",
                          "working = peak - imports (MiB)", "working / emb f16", "wall s"], per_size))
    print()
    print(markdown_table([f"stage", f"peak RSS MiB at {names}", f"peak x (rows x{factor:.0f})",
                          f"peak < x{factor / 3:.2g}?", "working x", f"working x, {mid['rows']} -> {hi['rows']}",
                          f"Δpeak MiB", "Δembeddings f16 MiB", "Δpeak / Δembeddings", "Δpeak - Δembeddings MiB"],
                         growth))
    print()
    print(markdown_table(["function (peak RSS above its entry RSS)", f"calls at {hi['rows']}", f"MiB at {names}",
                          f"x, {mid['rows']} -> {hi['rows']} (rows x{last:.2g})", f"x emb f16 at {hi['rows']}",
                          f"s at {hi['rows']}", "note"], profile))
    print(f"\n{where}; synthetic cache: {args.frames} frames per video, {args.dim}-d float16, Real_youtube + "
          f"{args.manipulations} manipulations, every prompt set; heads trained on {args.train_fakes}, tested on "
          f"{args.test_fakes}; {hi['scores_files']} heads. Each stage ran in a fresh child process; peak RSS = "
          "VmHWM of that process (these stages start no worker processes). 'RSS after imports' = after the "
          "script's own imports, before main(); working = peak - that. Function rows: highest RSS during a "
          f"call minus RSS at its entry (VmHWM reset on entry{'' if hi['fit']['can_reset'] else ' -- NOT possible here: rows invalid'}); "
          "freed heap pages below the entry RSS are reused first, so small sizes read low -- compare the two "
          "largest. The split (protocol hashes of video ids) is not exactly proportional to the rows.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main()
