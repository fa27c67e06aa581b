"""Where an encoder's weights come from, the same for every encoder: a seeded random init (`none`), a local
checkpoint file, or a library's tag read from its cache (offline where the hub cannot be reached, so a missing
tag fails in a second, not after a minute of retries)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from clipforensics.core.errors import UserError
from clipforensics.extract.models import file_fingerprint

RANDOM = "none"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
HUB_HOST = ("huggingface.co", 443)


def random_identity(init_seed: int) -> dict[str, Any]:
    return {"pretrained": RANDOM, "weights_kind": "random", "weights_fingerprint": f"init_seed={init_seed}",
            "random_weights": True}


def checkpoint_file(pretrained: str) -> Path | None:
    """The checkpoint file `pretrained` names (None: it names a tag); a named file that is not one is one line."""
    path = Path(pretrained).expanduser()
    if path.suffix not in CHECKPOINT_SUFFIXES and not path.exists():
        return None
    if not path.is_file():
        raise UserError(f"checkpoint {pretrained} is a folder, not a checkpoint file" if path.is_dir()
                        else f"checkpoint file not found: {pretrained}")
    return path


def file_identity(path: Path) -> dict[str, Any]:
    return {"pretrained": str(path.resolve()), "weights_kind": "file", "weights_fingerprint": file_fingerprint(path),
            "random_weights": False}


def tag_identity(tag: str) -> dict[str, Any]:
    return {"pretrained": tag, "weights_kind": "tag", "weights_fingerprint": f"tag={tag}", "random_weights": False}


def warn_random(model: str, init_seed: int, knowledge: str) -> None:
    print(f"WARNING: RANDOM WEIGHTS for {model} (--pretrained none, init seed {init_seed}): embeddings carry no "
          f"{knowledge} knowledge; results prove the machinery, not detection skill", file=sys.stderr)


def hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def offline_wanted() -> bool:
    """Tags are read from the local cache only when HF_HUB_OFFLINE=1 or the hub cannot be reached."""
    return os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()


@contextlib.contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Inside the block huggingface_hub uses its local cache only (a missing tag fails in ~0.1 s, not
    ~47 s of retries); the process's own setting is back afterwards."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def first_line(exc: BaseException) -> str:
    """An exception in one line: its first line, and the next where the first only announces it ("...:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return f"{type(exc).__name__}: {text[:200]}"
