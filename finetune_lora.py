"""Fine-tune CLIP's image tower with LoRA on a base cache's frames, select the epoch on validation, re-extract.

    python finetune_lora.py --data-root DIR --base-cache cache/NAME.h5 --out runs/NAME-lora

Model, weights, image size, prompts and data root come from the base cache, so the two cannot drift. In --out:
checkpoint.pt (every epoch; the same command resumes), adapter/ (peft format, best epoch), head.safetensors,
lora.json, train_log.csv, train_curve.png, scores.csv + scores.json (val and test rows, for evaluate.py) and
merged.safetensors; beside the base cache, NAME-lora-<adapter hash>.h5: the merged model's embeddings, for the
heads and the cross-manipulation matrix.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse
from pathlib import Path

from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import from_namespace, settings_parser
from clipforensics.data.crossdata import CrossSettings
from clipforensics.data.protocol import ProtocolSettings
from clipforensics.lora.model import LoraSettings
from clipforensics.lora.stage import finetune, summary_text
from clipforensics.lora.train import LOG
from clipforensics.report.training import training_curve
from clipforensics.lora.files import CURVE


def build_parser() -> argparse.ArgumentParser:
    return settings_parser(__doc__, (LoraSettings, "LoRA"), (ProtocolSettings, "protocol"),
                           (CrossSettings, "other data sets"))


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    summary = finetune(from_namespace(LoraSettings, ns), from_namespace(ProtocolSettings, ns),
                       from_namespace(CrossSettings, ns))
    out = Path(summary["settings"]["out"])  # the stage renders nothing: its training curve is drawn here
    training_curve(out / LOG, summary["best_epoch"], out / CURVE)
    print(summary_text(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
