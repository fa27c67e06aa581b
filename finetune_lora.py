"""Fine-tune CLIP's image tower by a method (LoRA by default) on a base cache's frames, select the epoch on
validation, re-extract.

    python finetune_lora.py --data-root DIR --base-cache cache/NAME.h5 --out runs/NAME-lora
    python finetune_lora.py ... --method layernorm --objective linear --uniformity-weight 0.5 --alignment-weight 0.1

--method: lora (peft LoRA), dora (peft DoRA, --targets mlp), layernorm (GenD: the tower's LayerNorms), svd
(Effort's SVD residual); --rank is the LoRA / DoRA rank and the SVD residual's, and an option of another method
is refused. Model, weights, image size, prompts and data root come from the base cache, so the two cannot drift.
In --out, for every method: checkpoint.pt (every epoch; the same command resumes), the method's change (adapter/
for LoRA and DoRA, peft format; layernorm.safetensors; ...), head.safetensors, lora.json (method, settings,
parameter counts), train_log.csv, train_curve.png, scores.csv + scores.json (val and test rows, for evaluate.py)
and merged.safetensors (the whole model under open_clip's names); beside the base cache,
NAME-lora-<change hash>.h5: the merged model's embeddings, for the heads and the cross-manipulation matrix.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: Ctrl-C while they load is one line, not a traceback
    from clipforensics.core.errors import quiet_interrupts

    quiet_interrupts()

import argparse
from pathlib import Path

from clipforensics.core.errors import cli_entry
from clipforensics.core.settings import from_namespace, settings_parser
from clipforensics.data.protocol import CrossSettings, ProtocolSettings
from clipforensics.lora.settings import LoraSettings


def build_parser() -> argparse.ArgumentParser:
    return settings_parser(__doc__, (LoraSettings, "fine-tuning"), (ProtocolSettings, "protocol"),
                           (CrossSettings, "other data sets"))


@cli_entry
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    # the stage only now: torch, peft and open_clip take seconds to load, which --help and a mistyped option skip
    from clipforensics.core.shards import current_shard
    from clipforensics.lora.files import CURVE
    from clipforensics.lora.stage import finetune, summary_text
    from clipforensics.lora.train import LOG
    from clipforensics.report.training import training_curve

    summary = finetune(from_namespace(LoraSettings, ns), from_namespace(ProtocolSettings, ns),
                       from_namespace(CrossSettings, ns))
    out = Path(summary["settings"]["out"])  # the stage renders nothing: its training curve is drawn here,
    if current_shard(None).leader:  # by torchrun's rank 0 alone, as every other file of the run folder
        training_curve(out / LOG, summary["best_epoch"], out / CURVE)
    print(summary_text(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
