"""prepare_frames.py --shard K/N, torchrun ranks and `merge` (issue 24); its renamed options (issue 23).

The sharded runs are checked against a plain run on the same generated videos: the merged data root must hold the
same frame files and byte-identical tables and prepare.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import prepare_frames
from clipforensics.core.errors import UserError
from clipforensics.core.ownership import JOURNAL, RECORD
from clipforensics.core.shards import Shard, current_shard
from clipforensics.frames.shards import DONE
from clipforensics.frames.tables import read_table
from clipforensics.synthetic import scene as synthetic
from conftest import kill_when

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
SIZE = 96
N_REAL = 5
HEAVY = {"cv2", "dlib", "torch", "joblib", "face_recognition_models"}


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()


def face_frames(video: int, n: int) -> list[np.ndarray]:
    scene = synthetic.make_video(0, video, n, SIZE)
    return [synthetic.add_noise(synthetic.render(scene, f, SIZE), 0, video, f)[..., ::-1].copy() for f in range(n)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two classes of 5 face videos, and one corrupt video (a failure every run must list)."""
    root = tmp_path_factory.mktemp("videos")
    for video in range(N_REAL):
        frames = face_frames(video, 6)
        write_video(root / "Real" / f"{video:03d}.avi", frames)
        write_video(root / "Fake" / f"{video:03d}_{(video + 1) % N_REAL:03d}.avi", frames[::-1])
    (root / "Fake" / "broken.mp4").write_bytes(os.urandom(3000))
    return root


def options(videos: Path, out: Path, *extra: str) -> list[str]:
    return ["--videos-root", str(videos), "--out", str(out), "--frames-per-video", "3", "--size", "32",
            "--detector", "haar", "--workers", "0", *extra]


def contents(folder: Path) -> dict[str, bytes]:
    """Every file of a data root by relative path, but its ownership record (which lists them)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (RECORD, JOURNAL)}


def dealt(shard_folder: Path) -> set[str]:
    """The videos a shard folder holds: written ones and failed ones."""
    written = {f"{p.parent.name}/{p.name}" for p in shard_folder.glob("[!.]*/*") if p.is_dir()}
    failed = read_table(shard_folder / "failed_videos.csv")
    return written | {f"{c}/{v}" for c, v in zip(failed["class"], failed["video"])}


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def single(videos, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A plain run into BASE/data, moved to BASE/single: the sharded runs write BASE/data again, so even the
    settings recorded in prepare.json (which name --out) must come out the same."""
    base = tmp_path_factory.mktemp("runs")
    assert prepare_frames.main(options(videos, base / "data")) == 0
    os.replace(base / "data", base / "single")
    return base, contents(base / "single")


def test_shards_then_merge_write_what_one_run_writes(videos, single, capsys):
    base, expected = single
    out = base / "data"
    for k in (1, 0):  # in any order
        assert prepare_frames.main([*options(videos, out), "--shard", f"{k}/2"]) == 0
        assert f"shard {k}/2: " in capsys.readouterr().out
    assert not out.exists()
    shards = [base / "data.shards" / f"shard-{k}-of-2" for k in (0, 1)]
    held = [dealt(folder) for folder in shards]
    every = {f"{cls}/{p.stem}" for cls in ("Real", "Fake") for p in (videos / cls).iterdir()}
    assert held[0] | held[1] == every and not held[0] & held[1] and abs(len(held[0]) - len(held[1])) <= 1
    assert all({name.split("/")[0] for name in h} == {"Real", "Fake"} for h in held)  # every class in each

    kept = base / "kept"  # shard 1 as it was: put back below, as a merge killed before its clean-up leaves it
    shutil.copytree(shards[1], kept, symlinks=True)
    assert prepare_frames.main(["merge", *options(videos, out)]) == 0
    assert "merged 2 shards: prepared 10 videos (30 frames)" in capsys.readouterr().out
    got = contents(out)
    assert got.keys() == expected.keys() and got == expected
    assert read_table(out / "failed_videos.csv")["video"].tolist() == ["broken"]
    assert json.loads((out / RECORD).read_text())["entries"] == json.loads((base / "single" / RECORD).read_text())[
        "entries"]
    assert not (base / "data.shards").exists()

    assert prepare_frames.main(["merge", *options(videos, out)]) == 0  # again: nothing left to move
    assert "prepared 0 videos (0 frames), skipped 10 already finished, 1 failed" in capsys.readouterr().out
    assert contents(out) == expected

    shards[1].parent.mkdir()
    os.replace(kept, shards[1])  # shard 0 cleaned up, shard 1 not: its videos move in again, shard 0's stay
    assert prepare_frames.main(["merge", *options(videos, out)]) == 0
    assert f"merged 1 shard: prepared {len(held[1]) - ('Fake/broken' in held[1])} videos" in capsys.readouterr().out
    assert contents(out) == expected and not (base / "data.shards").exists()


def shards_of(videos: Path, out: Path, *runs: tuple[str, tuple[str, ...]]) -> None:
    for shard, extra in runs:
        assert prepare_frames.main([*options(videos, out, *extra), "--shard", shard]) == 0


@pytest.mark.parametrize("runs, unfinished, words", [
    ([("0/3", ()), ("2/3", ())], False, ["missing shard 1/3 ", "run it with --shard K/N first"]),
    ([("0/2", ()), ("1/2", ("--size", "48", "--margin", "1.5"))], False,
     ["shard 1/2 ", "made with other settings", "size: 48 != 32", "margin: 1.5 != 1.3"]),
    ([("0/2", ()), ("1/3", ())], False, ["shards of different N", "shard-0-of-2, shard-1-of-3"]),
    ([("0/2", ()), ("1/2", ())], True, ["shard 1/2 unfinished (no shard.done.json)"]),
], ids=["missing", "other-settings", "different-N", "unfinished"])
def test_merge_refuses_in_one_line_and_writes_nothing(videos, tmp_path, capsys, runs, unfinished, words):
    out = tmp_path / "data"
    shards_of(videos, out, *runs)
    if unfinished:
        (tmp_path / "data.shards" / "shard-1-of-2" / DONE).unlink()  # as after a kill
    before = contents(tmp_path / "data.shards")
    capsys.readouterr()
    assert prepare_frames.main(["merge", *options(videos, out)]) == 2
    line = one_line(capsys)
    assert line.startswith("error: ") and all(word in line for word in words), line
    assert not out.exists() and contents(tmp_path / "data.shards") == before


def test_a_shard_rerun_with_other_settings_is_refused_and_overwrite_keeps_foreign_files(videos, tmp_path, capsys):
    out = tmp_path / "data"
    shards_of(videos, out, ("0/2", ()))
    folder = tmp_path / "data.shards" / "shard-0-of-2"
    assert prepare_frames.main([*options(videos, out, "--size", "40"), "--shard", "0/2"]) == 2
    assert "size: 32 != 40" in one_line(capsys)
    (folder / "notes.txt").write_text("mine")
    (folder / "Real" / "notes.txt").write_text("mine too")
    frames = {p: p.stat().st_mtime_ns for p in folder.glob("*/*/*.png")}
    assert prepare_frames.main([*options(videos, out, "--size", "40", "--overwrite"), "--shard", "0/2"]) == 0
    assert all(p.stat().st_mtime_ns != t for p, t in frames.items() if p.exists())  # every video redone
    assert {cv2.imread(str(p)).shape for p in folder.glob("*/*/*.png")} == {(40, 40, 3)}
    shards_of(videos, out, ("1/2", ("--size", "40")))
    assert prepare_frames.main(["merge", *options(videos, out, "--size", "40")]) == 0
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "Real" / "notes.txt").read_text() == "mine too"
    assert sorted(p.name for p in folder.iterdir()) == ["Real", "notes.txt"]  # the rest was the shard's: gone
    assert len(list(out.glob("*/*/*.png"))) == 30


@pytest.mark.slow
def test_a_shard_killed_with_kill_9_resumes_and_merges(tmp_path):
    root = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for video in range(6):  # noise at 320 px: slow enough to be killed half-way
        write_video(root / "Real" / f"{video:03d}.avi",
                    [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(12)])
    out = tmp_path / "data"
    args = ["--videos-root", str(root), "--out", str(out), "--frames-per-video", "12", "--size", "32",
            "--detector", "haar", "--detect-max-side", "320", "--workers", "2"]
    script = [sys.executable, str(ROOT / "prepare_frames.py")]
    folder = tmp_path / "data.shards" / "shard-0-of-2"
    other = subprocess.run([*script, *args, "--shard", "1/2"], env=ENV, capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    assert kill_when([*script, *args, "--shard", "0/2"], lambda: bool(list(folder.glob("Real/[0-9]*"))), ENV), \
        "the shard ended before it could be killed half-way"
    merged = subprocess.run([*script, "merge", *args], env=ENV, capture_output=True, text=True)
    assert merged.returncode == 2 and "shard 0/2 unfinished" in merged.stderr and "missing" not in merged.stderr
    resumed = subprocess.run([*script, *args, "--shard", "0/2"], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0 and "skipped 0 already" not in resumed.stdout, resumed.stdout + resumed.stderr
    done = subprocess.run([*script, "merge", *args], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("Real/*/*.png"))) == 6 * 12 and len(read_table(out / "videos.csv")) == 6
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not (tmp_path / "data.shards").exists()


@pytest.mark.slow
def test_torchrun_ranks_take_a_shard_each_and_rank_0_merges(videos, single, tmp_path):
    _, expected = single
    out = tmp_path / "data"
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", "--master_port=29541",
           str(ROOT / "prepare_frames.py"), *options(videos, out)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "merged 2 shards: prepared 10 videos" in done.stdout
    got = contents(out)
    assert got.keys() == expected.keys()
    assert {k: v for k, v in got.items() if k != "prepare.json"} == \
        {k: v for k, v in expected.items() if k != "prepare.json"}
    record, plain = (json.loads(d["prepare.json"]) for d in (got, expected))
    assert record["crops"] == plain["crops"] and record["settings"]["out"] == str(out)
    assert not (tmp_path / "data.shards").exists()


def test_shard_numbers_and_torchrun_ranks(monkeypatch, videos, tmp_path, capsys):
    for bad, words in (("2/2", "K must be in 0..N-1"), ("x", "--shard expects K/N"), ("1-2", "--shard expects K/N")):
        assert prepare_frames.main([*options(videos, tmp_path / "o"), "--shard", bad]) == 2
        assert words in one_line(capsys)
    assert current_shard("1/3") == Shard(1, 3) and current_shard(None) == Shard()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert current_shard(None) == Shard(3, 4, torchrun=True)
    with pytest.raises(UserError, match="cannot be combined with torchrun"):
        current_shard("0/2")
    assert Shard(1, 3).take(list(range(10))) == [1, 4, 7]
    assert prepare_frames.main(["merge", *options(videos, tmp_path / "o"), "--shard", "0/2"]) == 2
    assert "leave out --shard" in one_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("old, new", [("--frames", "--frames-per-video"), ("--jobs", "--workers")])
def test_old_option_names_answer_with_the_new_ones(videos, tmp_path, capsys, old, new):
    with pytest.raises(SystemExit) as exit_:
        prepare_frames.main([*options(videos, tmp_path / "o"), old, "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {old} is now {new}")


def test_the_recorded_keys_stay_and_workers_default_to_one_per_core(videos, single):
    base, _ = single
    record = json.loads((base / "single" / "prepare.json").read_text())
    assert record["crops"]["frames"] == 3 and "frames_per_video" not in record["crops"]  # read by detect, extraction
    assert record["settings"]["frames"] == 3 and record["settings"]["workers"] == 0
    done = subprocess.run([sys.executable, str(ROOT / "prepare_frames.py"), "--help"], capture_output=True, text=True)
    assert "--workers N" in done.stdout and "default: one per CPU core" in " ".join(done.stdout.split())


def test_merge_help_loads_no_heavy_library():
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "prepare_frames.py"), "merge", "--help"],
                          capture_output=True, text=True, env=ENV, cwd=ROOT)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    assert "usage:" in done.stdout and not names & HEAVY, sorted(names & HEAVY)

