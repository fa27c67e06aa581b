"""Training throughput of every fine-tuning method side by side (images/s, and relative to LoRA in the same run),
with each method's trainable parameters and the share of step time spent waiting on data.

Each row runs `lora.train.train_epoch` exactly as finetune_lora.py does (each method at its command-line defaults:
LoRA r=32, alpha=64 on the attention blocks; DoRA the same on the MLP, its only target set; LayerNorm tuning; the SVD
residual of rank 32 on the attention blocks, with both of Effort's losses; prompt head, flips and crops), on frames
generated at the model's image size, with random weights. The methods' runs are built once and timed in
interleaved rounds (the best round is kept), so a slow spell of a shared machine does not fall on one method.
The data share is the time spent in `next()` on the DataLoader (decode, augmentation, collation, hand-off from
workers) over the wall time of the timed steps; one warm-up step runs first.

    .venv/bin/python bench/lora_speed.py                                  # ~3 min on 2 idle cores
    .venv/bin/python bench/lora_speed.py --models tiny-vit --steps 8      # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (sets sys.path and HF_HUB_OFFLINE)
from common import command_line, machine, markdown_table, quiet

from clipforensics.data.manifest import ManifestSettings, scan  # noqa: E402
from clipforensics.extract.encoders import load_model  # noqa: E402
from clipforensics.extract.encoders.open_clip import model_config  # noqa: E402
from clipforensics.extract.settings import ModelSettings  # noqa: E402
from clipforensics.lora.methods import METHODS  # noqa: E402
from clipforensics.lora.model import parameter_counts  # noqa: E402
from clipforensics.lora.settings import LoraSettings  # noqa: E402
from clipforensics.lora.train import Optimization, TrainRun, make_optimization, train_epoch  # noqa: E402
from clipforensics.synthetic.write import generate  # noqa: E402

BATCH_SIZES = {"tiny-vit": 32}
DEFAULT_BATCH = 8  # ViT-B-32 at 224 px: ~1.6 s per step on 2 idle cores
FRAMES = 4  # per generated video; each video is there as real and as FaceSwap
METHOD_SETTINGS = {"dora": {"targets": "mlp"}}
"""Where a method's command-line defaults do not run: DoRA takes the MLP target set only."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny-vit,ViT-B-32", help="comma list of open_clip models (random weights)")
    p.add_argument("--steps", type=int, default=4, help="timed training steps per row, after one warm-up step")
    p.add_argument("--methods", default=",".join(["lora", *(m for m in METHODS if m != "lora")]),
                   help="comma list of fine-tuning methods (the first is the reference: lora)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds per method (the best is kept)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--verbose", action="store_true", help="show progress bars of the code under test")
    return p.parse_args(argv)


def batch_size(model: str) -> int:
    return BATCH_SIZES.get(model, DEFAULT_BATCH)


def bench_data(folder: Path, model: str, steps: int) -> Path:
    """Enough generated frames at the model's image size for the warm-up and the timed steps."""
    size = model_config(model)["vision_cfg"]["image_size"]
    videos = max(2, -(-(steps + 1) * batch_size(model) // (2 * FRAMES)))
    return generate(folder / model, videos=videos, frames=FRAMES, size=size, manipulations=("FaceSwap",))


def bench_run(model: str, data: Path, workers: int, method: str) -> tuple[TrainRun, Optimization]:
    loaded = load_model(ModelSettings(model=model, pretrained="none"), "cpu", "fp32")
    settings = LoraSettings(base_cache="-", out="-", workers=workers, epochs=1, batch_size=batch_size(model),
                            method=method, **METHOD_SETTINGS.get(method, {}))
    run = TrainRun.build(loaded, settings, data_root=data, train_rows=scan(ManifestSettings(data_root=str(data))))
    optim = make_optimization(run)
    train_epoch(run, optim, epoch=1, max_steps=1)
    return run, optim


def measure(model: str, data: Path, args: argparse.Namespace) -> list[list[object]]:
    """One row per method: the best of `rounds` interleaved timings, relative to the first method's."""
    runs = {method: bench_run(model, data, args.workers, method) for method in args.methods.split(",")}
    best: dict[str, dict[str, float]] = {}
    for round_ in range(args.rounds):
        for method, (run, optim) in runs.items():
            timed = train_epoch(run, optim, epoch=2 + round_, max_steps=args.steps)
            if method not in best or timed["images_per_s"] > best[method]["images_per_s"]:
                best[method] = timed
    reference = best[next(iter(runs))]["images_per_s"]
    return [[model, method, f"{parameter_counts(run.detector)[method]:,}", run.image_size, run.settings.batch_size,
             args.steps, f"{best[method]['images_per_s']:.1f}", f"{best[method]['images_per_s'] / reference:.2f}",
             f"{100 * best[method]['data_wait_share']:.1f} %"] for method, (run, _) in runs.items()]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    where = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet(not args.verbose):
        for model in args.models.split(","):
            rows += measure(model, bench_data(Path(tmp), model, args.steps), args)
    first = args.methods.split(",")[0]
    print(markdown_table(["model", "method", "trainable", "px", "batch", "steps", "train images/s",
                          f"vs {first}", "waiting on data"], rows))
    print(f"\n{where}; CPU, fp32 training, random weights, synthetic PNG frames, {args.workers} DataLoader workers, "
          f"best of {args.rounds} interleaved rounds.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main(sys.argv[1:])
