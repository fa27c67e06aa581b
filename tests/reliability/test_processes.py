"""Issue 11, processes: workers die with their parent, locks die with their holder, a kill's leftovers go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TINY, kill_when

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.exists()}


def noise_videos(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for video in range(n):
        path = root / "Real_youtube" / f"{video:03d}.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 240))
        for _ in range(24):
            writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
        writer.release()


@pytest.mark.slow
def test_prepare_frames_workers_die_with_their_parent_and_the_rerun_cleans_up(tmp_path):
    noise_videos(tmp_path / "in", 8)
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "prepare_frames.py"), "--videos-root", str(tmp_path / "in"), "--out", str(out),
           "--workers", "2", "--frames-per-video", "24", "--size", "64", "--detect-max-side", "320"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((out / "Real_youtube").glob("[0-9]*")):
        time.sleep(0.05)
    workers = descendants(proc.pid)
    assert proc.poll() is None and workers, "the run ended before it could be killed mid-way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), "a worker outlived its parent by more than 5 s"
    before = snapshot(out)
    time.sleep(1.0)
    assert snapshot(out) == before, "something kept writing into --out after the run was killed"
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "Real_youtube").glob("*/*.png"))) == 8 * 24
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.slow
def test_decode_workers_do_not_hold_the_extraction_lock_after_a_kill(synthetic_root, tmp_path):
    out = tmp_path / "c.h5"
    cmd = [sys.executable, str(ROOT / "extract_features.py"), "--data-root", str(synthetic_root), "--out", str(out),
           *TINY, "--workers", "2", "--chunk-size", "16", "--batch-size", "8", "--max-images", "96"]
    parts = tmp_path / "c.h5.parts"
    assert kill_when(cmd, lambda: bool(list(parts.glob("chunk-*.npz"))), ENV), \
        "the run ended before it could be killed mid-way"
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True)  # at once: workers may still be alive
    assert again.returncode == 0 and "another process" not in again.stderr, again.stderr
    assert out.is_file() and not parts.exists()
