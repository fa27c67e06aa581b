"""The files of a fine-tuned tower's run folder, named by the stage that writes them (finetune_lora.py) and read
through runs/ by detect.py and the studies."""

from __future__ import annotations

import hashlib
from pathlib import Path

RUN_FILE = "lora.json"  # a fine-tuned tower (finetune_lora.py): its record, naming its base cache
ADAPTER_DIR = "adapter"
ADAPTER_FILE = "adapter_model.safetensors"  # inside ADAPTER_DIR, peft's name
HEAD_FILE = "head.safetensors"
CURVE = "train_curve.png"


def sha256(path: Path) -> str:
    """The hex digest a tower run records of its adapter, and its re-extracted cache carries."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
