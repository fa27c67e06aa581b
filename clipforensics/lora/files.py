"""The files of a fine-tuned tower's run folder, named by the stage that writes them (finetune_lora.py) and read
through runs/ by detect.py and the studies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from clipforensics.core.io import atomic_path

if TYPE_CHECKING:  # the names and the hash are read by runs/ without torch
    import torch

RUN_FILE = "lora.json"  # a fine-tuned tower (finetune_lora.py): its record, naming its base cache
HEAD_FILE = "head.safetensors"
CURVE = "train_curve.png"


def save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """A .safetensors file, written atomically through open() so the umask applies (save_file makes it 0600)."""
    import safetensors.torch
    state = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        tmp.write_bytes(safetensors.torch.save(state, metadata=dict(metadata) if metadata else None))
    return path
