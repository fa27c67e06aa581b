"""Speed of the heads stage on a synthetic cache (no images, no model): the real code paths, timed.

A cache-like problem is written by common.make_cache: float16 embeddings with a weak class signal (a
shared fake direction plus one per manipulation, per-video offsets, frame noise), FF++-style videos and
target/source ids, and every prompt set embedded at random. Then:

    fit_heads.main(--heads all)            each head's fit < 3 s, all heads < 30 s   (issue 3)
    evaluate.main(["matrix", ...])         60 000 frames, 5 manipulations, < 60 s     (issue 3)
    evaluate.main([scores.csv ..., --out]) bootstrap 1000, every head's scores        (reported)

    .venv/bin/python bench/heads_speed.py                      # ~2 min on 2 cores
    .venv/bin/python bench/heads_speed.py --profile            # also cProfile every step that misses its goal
    .venv/bin/python bench/heads_speed.py --frames 20 --rows 4000 --matrix-rows 12000 --bootstrap 200   # smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import (HelpFormatter, cache_arguments, command_line, machine, make_cache, markdown_table, met, protocol,
                    quiet, timed)

import pandas as pd  # noqa: E402

import evaluate  # noqa: E402
import fit_heads  # noqa: E402
from clipforensics.heads.features import features, split_rows  # noqa: E402
from clipforensics.heads.heads import fit_head, resolve_heads  # noqa: E402
from clipforensics.data.cache import read_cache  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="frames in the heads cache")
    p.add_argument("--matrix-rows", type=int, default=60_000, help="frames in the matrix cache (0: skip it)")
    cache_arguments(p, manipulations=5)
    p.add_argument("--matrix-head", default="logreg", help="head of every matrix cell")
    p.add_argument("--repeats", type=int, default=3, help="fits of each head alone (the best counts)")
    p.add_argument("--profile", action="store_true", help="cProfile each step that misses its goal, print the top")
    p.add_argument("--verbose", action="store_true", help="show the output of the code under test")
    return p.parse_args(argv)


class Step:
    """Time calls quietly; cProfile the ones that miss their goal (with --profile)."""

    def __init__(self, args) -> None:
        self.args, self.profiles = args, {}

    def time(self, name: str, fn, *a) -> tuple[float, object]:
        with quiet(not self.args.verbose):
            seconds, result = timed(fn, *a)
        assert not isinstance(result, int) or result == 0, f"{name} failed (rerun with --verbose)"
        print(f"{name}: {seconds:.2f} s", file=sys.stderr)
        return seconds, result

    def profile(self, name: str, fn, *a) -> None:
        profiler = cProfile.Profile()
        with quiet(not self.args.verbose):
            profiler.runcall(fn, *a)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        self.profiles[name] = "\n".join(line for line in out.getvalue().splitlines()
                                         if line.strip() and not line.startswith(("   Ordered", "   List")))

    def __call__(self, name: str, goal: float | None, fn, *a) -> float:
        seconds, _ = self.time(name, fn, *a)
        if self.args.profile and goal is not None and seconds > goal:
            self.profile(name, fn, *a)
        return seconds


def head_fits(args, step: Step, cache: Path) -> dict[str, tuple[list[float], float]]:
    """Each head alone, on fit_heads' own train/val Features: (seconds of each repeat, val video AUC)."""
    data = read_cache(cache)
    rows = split_rows(data, protocol(args))
    train, val = features(data, rows, "train"), features(data, rows, "val")
    out = {}
    for name in resolve_heads(tuple(args.heads.split(",")), data.prompts):
        runs = [step.time(f"head {name}", fit_head, name, data.prompts, train, val) for _ in range(args.repeats)]
        times = [seconds for seconds, _ in runs]
        if args.profile and min(times) > 3:
            step.profile(f"head {name}", fit_head, name, data.prompts, train, val)
        out[name] = (times, runs[-1][1].head.val_auc)
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    where = machine()
    step = Step(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build, cache = timed(make_cache, tmp / "heads.h5", args.rows, args.frames, args.dim, args.manipulations,
                             args.signal, args.seed)
        print(f"heads cache: {args.rows} x {args.dim} in {build:.1f} s", file=sys.stderr)
        for name, (times, auc) in head_fits(args, step, cache).items():
            rows.append([f"head `{name}`: `heads.fit_head`, best of {len(times)}", f"{min(times):.2f}", "< 3",
                         met(min(times), 3, False),
                         f"all runs {', '.join(f'{t:.2f}' for t in times)}; val video AUC {auc:.3f}"])
        run = tmp / "run"
        total = step(f"fit_heads.py --heads {args.heads}", 30, fit_heads.main,
                     ["--cache", str(cache), "--heads", args.heads, "--out", str(run), "--overwrite",
                      "--train-fakes", args.train_fakes, "--test-fakes", args.test_fakes])
        per_head = sorted(p.name for p in run.iterdir() if (p / "scores.csv").exists())
        splits = split_rows(read_cache(cache), protocol(args))["split"].value_counts()
        rows.append([f"`fit_heads.py --heads {args.heads}` ({len(per_head)} heads: read cache, fit, score, save)",
                     f"{total:.1f}", "< 30", met(total, 30, False),
                     f"{args.rows} frames: train {splits.get('train', 0)}, val {splits.get('val', 0)}, "
                     f"test {splits.get('test', 0)}"])
        scores = [str(run / name / "scores.csv") for name in per_head]
        ev = step("evaluate.py scores", None, evaluate.main,
                  [*scores, "--out", str(tmp / "report"), "--bootstrap", str(args.bootstrap)])
        rows.append([f"`evaluate.py` on {len(scores)} scores files, bootstrap {args.bootstrap}", f"{ev:.1f}", "-",
                     "", f"{ev / len(scores):.1f} s per scores file"])
        if len(scores) > 1:
            one = step("evaluate.py one scores file", None, evaluate.main,
                       [scores[0], "--out", str(tmp / "report1"), "--bootstrap", str(args.bootstrap)])
            rows.append([f"`evaluate.py` on 1 scores file ({Path(scores[0]).parent.name}), bootstrap "
                         f"{args.bootstrap}", f"{one:.1f}", "-", "", ""])
        if args.matrix_rows:
            build, big = timed(make_cache, tmp / "matrix.h5", args.matrix_rows, args.frames, args.dim,
                               args.manipulations, args.signal, args.seed + 1)
            print(f"matrix cache: {args.matrix_rows} x {args.dim} in {build:.1f} s", file=sys.stderr)
            mx = step("evaluate.py matrix", 60, evaluate.main,
                      ["matrix", "--cache", str(big), "--heads", args.matrix_head, "--out", str(tmp / "matrix")])
            cells = len(pd.read_csv(tmp / "matrix" / "matrix.csv"))
            rows.append([f"`evaluate.py matrix --heads {args.matrix_head}` ({args.matrix_rows} frames, "
                         f"{args.manipulations} manipulations)", f"{mx:.1f}", "< 60", met(mx, 60, False),
                         f"{2 * args.manipulations if args.manipulations > 2 else args.manipulations} fits, "
                         f"{cells} cells"])
    for name, text in step.profiles.items():
        print(f"\ncProfile of {name} (missed its goal), by own time:\n{text}", file=sys.stderr)
    print(markdown_table(["what", "seconds", "goal (s)", "met?", "note"], rows))
    print(f"\n{where}; synthetic cache: {args.frames} frames per video, {args.dim}-d float16, "
          f"{args.manipulations} manipulations; heads trained on {args.train_fakes}, tested on {args.test_fakes}.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main()
