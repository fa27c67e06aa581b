"""The helpers every benchmark shares: timing, quiet calls, Markdown tables, the command line, and the
synthetic embedding cache (with its argument block) of the heads and memory benchmarks.

Importing this module costs only the standard library (bench/memory.py measures children whose
baseline must stay the script's own): numpy, pandas and clipforensics are imported inside the
functions that need them."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never download anything
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Swallow stdout/stderr (progress bars, summaries) of the code under test."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The exact command that produced this output, relative to the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", script, *sys.argv[1:]])


def machine() -> str:
    import torch
    return (f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average {os.getloadavg()[0]:.1f} at start")


def met(value: float, goal: float, higher_is_better: bool = True) -> str:
    return "yes" if (value >= goal if higher_is_better else value <= goal) else "**no**"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the docstring's layout and shows every default."""


def cache_arguments(p: argparse.ArgumentParser, *, manipulations: int, note: str = "") -> None:
    """The synthetic cache's and the protocol's options (bench/heads_speed.py, bench/memory.py)."""
    p.add_argument("--frames", type=int, default=100, help="frames per video")
    p.add_argument("--dim", type=int, default=512, help="embedding dimension")
    p.add_argument("--manipulations", type=int, default=manipulations,
                   help="fake classes besides Real_youtube" + (f" ({note})" if note else ""))
    p.add_argument("--signal", type=float, default=0.08, help="fake shift along the class directions (noise = 1)")
    p.add_argument("--train-fakes", default="FaceSwap", help="protocol of the head fits (comma list)")
    p.add_argument("--test-fakes", default="NeuralTextures", help="protocol of the head fits (comma list or rest)")
    p.add_argument("--heads", default="all", help="heads for fit_heads.py (comma list or all)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of evaluate.py")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic embeddings")


def protocol(args: argparse.Namespace):
    """The ProtocolSettings of --train-fakes / --test-fakes."""
    from clipforensics.data.protocol import ProtocolSettings
    return ProtocolSettings(train_fakes=tuple(args.train_fakes.split(",")),
                            test_fakes=tuple(args.test_fakes.split(",")))


def make_cache(path: Path, rows: int, frames: int, dim: int, n_manip: int, signal: float, seed: int) -> Path:
    """FF++-shaped synthetic cache of `rows` frames, no images, no model: float16 embeddings with a weak
    class signal (a shared fake direction plus one per manipulation, per-video offsets, frame noise);
    videos cycle over the classes, each fake names a real target and source (swapped pairs, as in FF++);
    every prompt set embedded at random."""
    import numpy as np
    import pandas as pd

    from clipforensics.data.cache import PromptEmbeddings, write_cache
    from clipforensics.data.manifest import COLUMNS, manifest_hash
    from clipforensics.extract.prompts import PROMPT_SETS
    from clipforensics.synthetic.manipulations import SUPPORTED_MANIPULATIONS
    from clipforensics.synthetic.write import REAL_CLASS

    rng = np.random.default_rng(seed)
    classes = (REAL_CLASS,) + SUPPORTED_MANIPULATIONS[:n_manip]
    n_videos = rows // frames
    n_real = -(-n_videos // len(classes))
    common_dir = rng.normal(0, 1, dim) * 3  # CLIP embeddings share a large common component
    fake_dir = rng.normal(0, 1, dim) / np.sqrt(dim)
    manip_dir = {m: rng.normal(0, 1, dim) / np.sqrt(dim) for m in classes[1:]}
    records, blocks = [], []
    for v in range(n_videos):
        cls, k = classes[v % len(classes)], v // len(classes)
        real = cls == REAL_CLASS
        partner = (k ^ 1) if (k ^ 1) < n_real else (k + 1) % n_real  # FF++ swaps pairs: 000_001 and 001_000
        target, source = f"{k % n_real:03d}", "" if real else f"{partner % n_real:03d}"
        vid = target if real else f"{target}_{source}"
        shift = 0 if real else signal * np.sqrt(dim) * (fake_dir + manip_dir[cls]) / np.sqrt(2)
        offset = rng.normal(0, 0.5, dim)  # per-video identity, shared by its frames
        blocks.append(common_dir + shift + offset + rng.normal(0, 1, (frames, dim)))
        records += [(f"{cls}/{vid}/{f:03d}.png", int(not real), cls, f"{cls}/{vid}", target, source)
                    for f in range(frames)]
    manifest = pd.DataFrame(records, columns=list(COLUMNS))
    manifest["label"] = manifest["label"].astype(np.int8)
    embeddings = np.concatenate(blocks).astype(np.float16)
    order = manifest["path"].argsort(kind="stable").to_numpy()  # as scan() sorts
    manifest, embeddings = manifest.iloc[order].reset_index(drop=True), embeddings[order]
    prompts = {name: PromptEmbeddings(list(ps.texts), rng.normal(0, 1, (len(ps.texts), dim)).astype(np.float32),
                                      np.array(ps.labels)) for name, ps in PROMPT_SETS.items()}
    attrs = {"model": "bench-synthetic", "pretrained": "none", "weights_kind": "random",
             "weights_fingerprint": f"bench seed={seed}", "init_seed": seed, "image_size": 224,
             "precision": "bf16", "manifest_hash": manifest_hash(manifest), "data_root": str(path.parent / "no-images"),
             "random_weights": True, "embed_dim": dim}
    return write_cache(path, embeddings=embeddings, manifest=manifest, attrs=attrs, prompts=prompts,
                       failed=pd.DataFrame({"path": [], "reason": []}))
