"""`--help` answers before any heavy library loads: each script parses its options first (issue 23: ~1 s).

Checked by what the interpreter imports (`python -X importtime`), not by a clock, so the test means the same on a
slow or busy machine: none of the libraries that take seconds to load may appear while `--help` is answered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "torchvision", "open_clip", "peft", "timm", "sklearn", "scipy", "h5py", "matplotlib", "cv2",
         "dlib", "face_recognition_models", "skimage", "safetensors"}
COMMANDS = [["prepare_frames.py"], ["prepare_frames.py", "merge"], ["extract_features.py"], ["extract_features.py", "merge"], ["fit_heads.py"],
            ["finetune_lora.py"], ["evaluate.py"], ["evaluate.py", "matrix"], ["evaluate.py", "robustness"],
            ["evaluate.py", "methods"], ["detect.py"]]


def imported_while(args: list[str]) -> tuple[set[str], str]:
    """Top-level packages imported by `python -X importtime SCRIPT ARGS`, and its stdout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    return names, done.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_loads_no_heavy_library(command: list[str]) -> None:
    names, out = imported_while([*command, "--help"])
    assert "usage:" in out
    assert not names & HEAVY, f"{' '.join(command)} --help imports {sorted(names & HEAVY)}"
