"""Cost of the analyses a cache makes cheap (issue 15), on a synthetic cache (no images, no model):
    layer sweep      fit_heads.main(--layer-sweep) on a cache with 12 stored layers     (goal: seconds)
    robustness       evaluate.main(["robustness", run]) over every perturbed copy       (goal: seconds)
    cache size       a 12-layer cache (ViT-B-32: width 768, float16) per 10k frames, measured on disk

The cache is written with clipforensics' own write_cache (bench/common.py's FF++-shaped make_cache):
layer k is the embedding through a random 512 -> 768 map with signal growing with k, plus noise; copy
blur:k shrinks the embedding's signal and adds noise. The numbers are about cost, not detection.

    .venv/bin/python bench/analyses.py                         # 20k frames, 12 layers, 4 copies
    .venv/bin/python bench/analyses.py --rows 4000 --bootstrap 100   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import HelpFormatter, command_line, machine, make_cache, markdown_table, quiet, timed

import numpy as np  # noqa: E402

import evaluate  # noqa: E402
import fit_heads  # noqa: E402
from clipforensics.data.cache import read_cache, write_cache  # noqa: E402

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "FaceSwap,Deepfakes,Face2Face,NeuralTextures"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="frames in the timed cache")
    p.add_argument("--frames", type=int, default=20, help="frames per video")
    p.add_argument("--dim", type=int, default=512, help="embedding width (ViT-B-32: 512)")
    p.add_argument("--width", type=int, default=768, help="tower width of a stored layer (ViT-B-32: 768)")
    p.add_argument("--layers", type=int, default=12, help="stored layers (ViT-B-32: 12 blocks)")
    p.add_argument("--copies", type=int, default=4, help="perturbed copies (blur:1..N)")
    p.add_argument("--heads", default="logreg", help="heads of the sweep and of the robustness run")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples in the robustness evaluation")
    return p.parse_args(argv)


def with_extras(path: Path, rows: int, args, layers: int, copies: int) -> Path:
    """common.make_cache's synthetic cache, rewritten with `layers` block tokens and `copies` perturbed copies."""
    make_cache(path, rows, args.frames, args.dim, 4, 0.3, 0)
    cache = read_cache(path)
    rng = np.random.default_rng(1)
    emb = cache.embeddings.astype(np.float32)
    extras = {}
    for k in range(layers):
        proj = rng.normal(0, 1 / np.sqrt(args.dim), (args.dim, args.width)).astype(np.float32)
        extras[f"layers/{k}"] = (emb @ proj) * (k + 1) / layers + rng.normal(0, 1, (len(emb), args.width))
    for k in range(1, copies + 1):
        extras[f"perturbed/blur:{k}/image_embeddings"] = emb * (1 - 0.2 * k) + rng.normal(0, 0.5 * k, emb.shape)
    attrs = {**cache.attrs, "layers": list(range(layers))}
    return write_cache(path, embeddings=cache.embeddings, manifest=cache.manifest, attrs=attrs,
                       prompts=cache.prompts, failed=cache.failed, extras=extras)


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"command: {command_line()}\nmachine: {machine()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sized = with_extras(tmp / "sized.h5", 10_000, args, args.layers, 0)
        plain = tmp / "plain.h5"
        make_cache(plain, 10_000, args.frames, args.dim, 4, 0.3, 0)
        sized_mb, plain_mb = sized.stat().st_size / 2**20, plain.stat().st_size / 2**20
        sized.unlink()
        cache = with_extras(tmp / "timed.h5", args.rows, args, args.layers, args.copies)
        with quiet():
            sweep_s, _ = timed(fit_heads.main, ["--cache", str(cache), "--heads", args.heads, "--out",
                                                str(tmp / "sweep"), "--layer-sweep", *PROTOCOL])
            fit_s, _ = timed(fit_heads.main, ["--cache", str(cache), "--heads", args.heads, "--out",
                                              str(tmp / "run"), *PROTOCOL])
            robust_s, _ = timed(evaluate.main, ["robustness", str(tmp / "run"), "--out", str(tmp / "robust"),
                                                "--bootstrap", str(args.bootstrap)])
    n_heads = len(args.heads.split(","))
    print(markdown_table(["measure", "value"], [
        [f"layer sweep: {args.layers} layers + final x {n_heads} head(s), {args.rows} frames (s)", sweep_s],
        [f"robustness: {n_heads} head(s) x (clean + {args.copies} copies), bootstrap {args.bootstrap} (s)", robust_s],
        ["  (fitting that run, not part of robustness) (s)", fit_s],
        [f"cache with {args.layers} layers x {args.width} float16, per 10k frames, on disk (MiB)", sized_mb],
        [f"  the same cache without layers ({args.dim}-d embeddings only) (MiB)", plain_mb],
    ]))


if __name__ == "__main__":
    main()
