"""Shared fixtures: a small generated data set and a tiny-model cache, built once per session."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread per process (this one and every script a test starts, which inherit it), set before torch
# loads. The tiny model's small ops gain nothing from a second thread, and on 2 cores shared with other work an
# OpenMP thread waiting for its descheduled partner stalls every op: under a 2-process busy load the LoRA module
# fixtures took 51 s with torch's default 2 threads and 7 s with 1. A value set by the caller is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import pytest  # noqa: E402

import extract_features  # noqa: E402
from clipforensics.data.manifest import ManifestSettings  # noqa: E402
from clipforensics.synthetic.write import generate  # noqa: E402

TINY = ["--model", "tiny-vit", "--pretrained", "none", "--workers", "0", "--batch-size", "16"]


@pytest.fixture(scope="session", autouse=True)
def own_user_cache(tmp_path_factory):
    """`--precision auto` remembers its CPU calibration in the user's cache dir: keep tests out of the real one."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    yield
    if saved is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """48 real videos x 2 frames and 4 manipulations of them, 64 px."""
    return generate(tmp_path_factory.mktemp("data") / "ff", videos=48, frames=2, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_cache(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "tiny.h5"
    assert extract_features.main(["--data-root", str(synthetic_root), "--out", str(out), *TINY]) == 0
    return out


def generated_cache(factory: pytest.TempPathFactory, name: str, **data: Any) -> Path:
    """A generated data root (`generate(**data)`, FaceSwap and NeuralTextures at 3x strength unless given) and its
    tiny-vit cache, for tests that need a data set of their own size."""
    data = {"strength": 3, "manipulations": ("FaceSwap", "NeuralTextures"), "seed": 0, **data}
    root = generate(factory.mktemp(name) / "ff", **data)
    out = factory.mktemp(f"{name}-cache") / f"{name}.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(out), *TINY, "--batch-size", "32"]) == 0
    return out


def touch(root: Path, *relative: str) -> None:
    """Empty files at these paths under `root`: for code that reads names and layouts, never contents."""
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def manifest_settings(root: Path, **kwargs) -> ManifestSettings:
    return ManifestSettings(data_root=str(root), **kwargs)


@contextlib.contextmanager
def lock_held_elsewhere(path: Path) -> Iterator[None]:
    """Hold `path`'s lock from another process (locks are per process, as two runs would be)."""
    code = ("import fcntl, sys\nfh = open(sys.argv[1], 'a')\nfcntl.lockf(fh, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.stdin.close()
        proc.wait()


def kill_when(cmd: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None,
              timeout: float = 120.0) -> bool:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds (a crash mid-run: what every resume test starts from), and
    say whether it was still running when killed (False: it ended, or `timeout` passed, first)."""
    import signal
    import time

    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


def kill_at_first_checkpoint(args: list[str], out: Path) -> None:
    """Run `finetune_lora.py ARGS` and SIGKILL it as soon as its first checkpoint exists (a crash mid-run), before
    the run is finished: what the resume tests start from."""
    import torch

    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "finetune_lora.py"), *args]
    kill_when(cmd, lambda: (out / "checkpoint.pt").exists())
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] < 3 and not (out / "lora.json").exists()
