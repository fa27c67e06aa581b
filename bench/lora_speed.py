"""LoRA training throughput and the share of step time spent waiting on data.

Each row runs `lora.train.train_epoch` exactly as finetune_lora.py does (default LoRA settings: r=32, alpha=64 on the
attention blocks, prompt head, flips and crops), on frames generated at the model's image size, with random weights.
The data share is the time spent in `next()` on the DataLoader (decode, augmentation, collation, hand-off from
workers) over the wall time of the timed steps; one warm-up step runs first.

    .venv/bin/python bench/lora_speed.py                                  # ~1 min on 2 idle cores
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
from clipforensics.extract.models import ModelSettings, load_model, model_config  # noqa: E402
from clipforensics.lora.model import LoraSettings, parameter_counts  # noqa: E402
from clipforensics.lora.train import TrainRun, make_optimization, train_epoch  # noqa: E402
from clipforensics.synthetic.write import generate  # noqa: E402

BATCH_SIZES = {"tiny-vit": 32}
DEFAULT_BATCH = 8  # ViT-B-32 at 224 px: ~1.6 s per step on 2 idle cores
FRAMES = 4  # per generated video; each video is there as real and as FaceSwap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny-vit,ViT-B-32", help="comma list of open_clip models (random weights)")
    p.add_argument("--steps", type=int, default=4, help="timed training steps per row, after one warm-up step")
    p.add_argument("--workers", default="0,2", help="comma list of DataLoader worker counts")
    p.add_argument("--verbose", action="store_true", help="show progress bars of the code under test")
    return p.parse_args(argv)


def batch_size(model: str) -> int:
    return BATCH_SIZES.get(model, DEFAULT_BATCH)


def bench_data(folder: Path, model: str, steps: int) -> Path:
    """Enough generated frames at the model's image size for the warm-up and the timed steps."""
    size = model_config(model)["vision_cfg"]["image_size"]
    videos = max(2, -(-(steps + 1) * batch_size(model) // (2 * FRAMES)))
    return generate(folder / model, videos=videos, frames=FRAMES, size=size, manipulations=("FaceSwap",))


def bench_run(model: str, data: Path, workers: int) -> TrainRun:
    loaded = load_model(ModelSettings(model=model, pretrained="none"), "cpu", "fp32")
    settings = LoraSettings(base_cache="-", out="-", workers=workers, epochs=1, batch_size=batch_size(model))
    return TrainRun.build(loaded, settings, data_root=data, train_rows=scan(ManifestSettings(data_root=str(data))))


def measure(model: str, data: Path, workers: int, steps: int) -> list[object]:
    run = bench_run(model, data, workers)
    optim = make_optimization(run)
    train_epoch(run, optim, epoch=1, max_steps=1)
    timed = train_epoch(run, optim, epoch=2, max_steps=steps)
    return [model, run.image_size, run.settings.batch_size, workers, steps, f"{timed['images_per_s']:.1f}",
            f"{100 * timed['data_wait_share']:.1f} %", f"{parameter_counts(run.detector)['lora']:,}"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    where = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet(not args.verbose):
        for model in args.models.split(","):
            data = bench_data(Path(tmp), model, args.steps)
            rows += [measure(model, data, int(workers), args.steps) for workers in args.workers.split(",")]
    print(markdown_table(["model", "px", "batch", "workers", "steps", "train images/s", "waiting on data",
                          "LoRA params"], rows))
    print(f"\n{where}; CPU, fp32 training, random weights, synthetic PNG frames.")
    print(f"\ncommand: `{command_line()}`")


if __name__ == "__main__":
    main(sys.argv[1:])
