"""Speed of cross-dataset evaluation on synthetic caches (no images, no model): the real code paths, timed.

One FF++-shaped cache (common.make_cache) and `--caches` - 1 caches in Celeb-DF v2's layout (with an
official test list), all with the same model identity, `--rows` frames each. Then, side by side in one run:

    evaluate.main(["matrix", --cache A, --train-cache B, --test-cache C, ...])   4 caches x 20k frames < 60 s (issue 13)
    evaluate.main(["matrix", --cache A])                                        the single-cache matrix, for the ratio
    fit_heads.main(--cache A --test-cache B,C,...) vs without                   what testing elsewhere adds to a fit

    .venv/bin/python bench/crossdata_speed.py                          # ~3 min on 2 cores
    .venv/bin/python bench/crossdata_speed.py --rows 4000 --bootstrap 200   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import (HelpFormatter, cache_arguments, command_line, machine, make_cache, markdown_table, met, quiet,
                    timed)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import evaluate  # noqa: E402
import fit_heads  # noqa: E402
from clipforensics.data.cache import IDENTITY_KEYS, read_attrs, read_cache, write_cache  # noqa: E402
from clipforensics.data.manifest import COLUMNS, OFFICIAL_SPLIT, manifest_hash  # noqa: E402

GOAL = 60.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="frames in every cache")
    p.add_argument("--caches", type=int, default=4, help="caches in the matrix: the primary and N-1 Celeb-DF-style")
    p.add_argument("--train-caches", type=int, default=1, help="how many of the others are also training rows")
    p.add_argument("--matrix-head", default="logreg",
                   help="the one head of every matrix row (evaluate.py matrix --heads) and of the fit_heads.py runs")
    p.add_argument("--verbose", action="store_true", help="show the output of the code under test")
    cache_arguments(p, manipulations=4, note="of the primary cache")
    return p.parse_args(argv)


def make_celebdf_cache(path: Path, rows: int, args: argparse.Namespace, like: Path, seed: int) -> Path:
    """A Celeb-DF-v2-shaped cache with `like`'s model identity: Celeb-real/id<k>_0000 and one fake each,
    a third of them on the official test list; embeddings shifted off the primary's (another domain)."""
    rng = np.random.default_rng(seed)
    attrs = read_attrs(like)
    primary = read_cache(like)
    dim, frames = primary.embeddings.shape[1], args.frames
    n_real = max(3, rows // frames // 2)
    domain = rng.normal(0, 1, dim) * 2
    fake_dir = rng.normal(0, 1, dim) / np.sqrt(dim)
    base = primary.embeddings[: rows].astype(np.float32).mean(axis=0)
    records, blocks = [], []
    for k in range(n_real):
        split = "test" if k % 3 == 0 else ""
        for real, folder in ((True, f"Celeb-real/id{k}_0000"), (False, f"Celeb-synthesis/id{k}_id{(k + 1) % n_real}_0000")):
            shift = 0 if real else args.signal * np.sqrt(dim) * fake_dir
            blocks.append(base + domain + shift + rng.normal(0, 0.5, dim) + rng.normal(0, 1, (frames, dim)))
            records += [(f"{folder}/{f:03d}.jpg", int(not real), folder.split("/")[0], folder, f"id{k}_0000", "",
                         split) for f in range(frames)]
    manifest = pd.DataFrame(records, columns=[*COLUMNS, OFFICIAL_SPLIT])
    manifest["label"] = manifest["label"].astype(np.int8)
    embeddings = np.concatenate(blocks).astype(np.float16)
    order = manifest["path"].argsort(kind="stable").to_numpy()
    manifest, embeddings = manifest.iloc[order].reset_index(drop=True), embeddings[order]
    keep = {k: attrs[k] for k in (*IDENTITY_KEYS, "weights_kind", "random_weights", "embed_dim") if k in attrs}
    keep.update(manifest_hash=manifest_hash(manifest), data_root=str(path.parent / "no-images"))
    return write_cache(path, embeddings=embeddings, manifest=manifest, attrs=keep, prompts=primary.prompts,
                       failed=pd.DataFrame({"path": [], "reason": []}))


def run(name: str, fn, argv: list[str], verbose: bool) -> float:
    with quiet(not verbose):
        seconds, code = timed(fn, argv)
    assert code == 0, f"{name} failed (rerun with --verbose)"
    print(f"{name}: {seconds:.1f} s", file=sys.stderr)
    return seconds


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.caches < 2 or not 0 <= args.train_caches < args.caches:
        raise SystemExit("--caches must be at least 2 and --train-caches below it")
    where = machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build, primary = timed(make_cache, tmp / "ffpp.h5", args.rows, args.frames, args.dim, args.manipulations,
                               args.signal, args.seed)
        others = [make_celebdf_cache(tmp / f"celebdf{i}.h5", args.rows, args, primary, args.seed + 1 + i)
                  for i in range(args.caches - 1)]
        print(f"{args.caches} caches of {args.rows} frames (the primary built in {build:.1f} s)", file=sys.stderr)
        trainers, tests = others[: args.train_caches], others[args.train_caches:]
        boot = ["--bootstrap", str(args.bootstrap)]
        multi_argv = ["matrix", "--cache", str(primary), "--heads", args.matrix_head, "--out", str(tmp / "multi"),
                      *boot, *[a for c in trainers for a in ("--train-cache", str(c))],
                      *[a for c in tests for a in ("--test-cache", str(c))]]
        multi = run("matrix over all caches", evaluate.main, multi_argv, args.verbose)
        single = run("matrix on the primary cache", evaluate.main,
                     ["matrix", "--cache", str(primary), "--heads", args.matrix_head, "--out", str(tmp / "single"),
                      *boot], args.verbose)
        fit_argv = ["--cache", str(primary), "--heads", args.matrix_head, "--train-fakes", args.train_fakes,
                    "--test-fakes", args.test_fakes]
        alone = run("fit_heads alone", fit_heads.main, [*fit_argv, "--out", str(tmp / "alone")], args.verbose)
        with_tests = run("fit_heads with every other cache as a test set", fit_heads.main,
                         [*fit_argv, "--out", str(tmp / "elsewhere"),
                          *[a for c in others for a in ("--test-cache", str(c))]], args.verbose)
        matrix = pd.read_csv(tmp / "multi" / "matrix.csv")
        fits = matrix["train"].nunique() + (matrix["train"] == "all others").sum() - 1
    n_rows, n_cols = matrix["train"].nunique(), matrix["test"].nunique()
    table = [
        [f"`evaluate.py matrix` over {args.caches} caches ({args.train_caches} also training)", f"{multi:.1f}",
         f"< {GOAL:.0f}", met(multi, GOAL, False),
         f"{args.caches} x {args.rows} frames; {n_rows} rows ({fits} fits) x {n_cols} columns, {len(matrix)} cells"],
        ["`evaluate.py matrix` on the primary cache alone", f"{single:.1f}", "-", "",
         f"ratio multi / single {multi / single:.2f}"],
        [f"`fit_heads.py --heads {args.matrix_head}` alone", f"{alone:.1f}", "-", "", ""],
        [f"`fit_heads.py --heads {args.matrix_head}` with {len(others)} --test-cache", f"{with_tests:.1f}", "-", "",
         f"ratio {with_tests / alone:.2f}"],
    ]
    print(markdown_table(["what", "seconds", "goal (s)", "met?", "note"], table))
    print(f"\n{where}; synthetic caches: {args.frames} frames per video, {args.dim}-d float16, bootstrap "
          f"{args.bootstrap}; the primary has {args.manipulations} manipulations, the others Celeb-DF v2's layout "
          "with a third of their videos on the official test list.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main()
