"""Owned outputs (core.io): a stage replaces only what it wrote and never writes where its inputs are."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from clipforensics.core.errors import UserError
from clipforensics.core.io import (RECORD, OutputDir, claim_output, claim_output_file, exclusive_lock,
                                   install_dir, remove_stale_temps, sidecar, temp_sibling)


def test_a_new_folder_is_claimed_and_its_record_lists_what_the_stage_wrote(tmp_path):
    run = claim_output(tmp_path / "run", stage="fit_heads")
    run.file("logreg/scores.csv").parent.mkdir()
    (run.path / "logreg" / "scores.csv").write_text("x")
    record = json.loads((tmp_path / "run" / RECORD).read_text())
    assert record == {"stage": "fit_heads", "entries": ["logreg"], "version": 1}
    again = claim_output(tmp_path / "run", stage="fit_heads")
    assert again.entries == {"logreg"} and again.foreign() == []


def test_a_non_empty_folder_without_record_is_refused_and_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "other-run").mkdir()
    with pytest.raises(UserError, match=r"--out .* is not empty \(notes.txt, other-run\) and was not written by"):
        claim_output(tmp_path, stage="fit_heads")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "other-run"]


def test_clear_removes_only_recorded_entries(tmp_path):
    run = claim_output(tmp_path / "run", stage="lora")
    for name in ("adapter", "lora.json"):
        run.own(name)
    (run.path / "adapter").mkdir()
    (run.path / "adapter" / "w.safetensors").write_text("w")
    (run.path / "lora.json").write_text("{}")
    (run.path / "notes.txt").write_text("mine")
    run = claim_output(tmp_path / "run", stage="lora")
    assert [p.name for p in run.foreign()] == ["notes.txt"]
    run.clear()
    assert sorted(p.name for p in run.path.iterdir()) == [RECORD, "notes.txt"]
    assert (run.path / "notes.txt").read_text() == "mine"


def test_an_entry_the_stage_did_not_write_is_never_replaced(tmp_path):
    run = claim_output(tmp_path / "run", stage="fit_heads")
    (run.path / "svm").mkdir(parents=True)
    with pytest.raises(UserError, match="svm exists and was not written by fit_heads"):
        run.own("svm")


def test_another_stages_folder_and_a_damaged_record_are_refused(tmp_path):
    claim_output(tmp_path / "a", stage="prepare_frames").own("faces.csv")
    with pytest.raises(UserError, match="holds the output of prepare_frames, not fit_heads"):
        claim_output(tmp_path / "a", stage="fit_heads")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / RECORD).write_text("{not json")
    with pytest.raises(UserError, match="is damaged"):
        claim_output(tmp_path / "b", stage="fit_heads")


def test_a_refused_or_unfinished_claim_leaves_no_folder_behind(tmp_path):
    claim_output(tmp_path / "a" / "b", stage="x")
    assert not (tmp_path / "a").exists()


def test_a_folder_holding_only_another_stages_output_can_be_claimed(tmp_path):
    """`make matrix` may write reports/demo/matrix before `make eval` writes reports/demo."""
    claim_output(tmp_path / "report" / "matrix", stage="matrix").own("matrix.csv")
    report = claim_output(tmp_path / "report", stage="evaluate")
    report.own("metrics.json")
    assert report.foreign() == []


def test_a_nested_output_of_another_stage_is_not_foreign(tmp_path):
    report = claim_output(tmp_path / "report", stage="evaluate")
    report.own("metrics.json")
    claim_output(tmp_path / "report" / "matrix", stage="matrix").own("matrix.csv")
    assert claim_output(tmp_path / "report", stage="evaluate").foreign() == []
    report.clear()
    assert (tmp_path / "report" / "matrix" / RECORD).is_file()


@pytest.mark.parametrize("where", ["same", "contains", "inside"])
def test_an_output_equal_to_containing_or_inside_an_input_is_refused(tmp_path, where):
    data = tmp_path / "data"
    (data / "Real_youtube").mkdir(parents=True)
    out = {"same": data, "contains": tmp_path, "inside": data / "runs"}[where]
    words = {"same": "is the input", "contains": "contains the input", "inside": "is inside the input"}[where]
    with pytest.raises(UserError, match=f"--out .* {words} --data-root"):
        claim_output(out, stage="x", inputs=[("--data-root", data)])
    if where == "inside":
        with pytest.raises(UserError, match=words):
            claim_output_file(out / "c.h5", inputs=[("--data-root", data)])


def test_an_output_file_equal_to_an_input_file_is_refused(tmp_path):
    (tmp_path / "base.h5").write_text("h5")
    with pytest.raises(UserError, match="--merge-out .*base.h5 is the input --base-cache"):
        claim_output_file(tmp_path / "base.h5", inputs=[("--base-cache", tmp_path / "base.h5")], flag="--merge-out")


def test_a_link_to_an_input_counts_as_the_input(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "base.h5").write_text("h5")
    os.symlink(tmp_path / "cache", tmp_path / "link")
    with pytest.raises(UserError, match="contains the input --base-cache"):
        claim_output(tmp_path / "link", stage="lora", inputs=[("--base-cache", tmp_path / "cache" / "base.h5")])


def test_output_files_are_checked_before_work(tmp_path):
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(UserError, match=r"--out .*d.h5 is a folder; name a file such as"):
        claim_output_file(tmp_path / "d.h5", suffixes=(".h5",))
    with pytest.raises(UserError, match="must end in .h5"):
        claim_output_file(tmp_path / "c.json", suffixes=(".h5",))
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot create"):
        claim_output_file(tmp_path / "f" / "c.h5")
    with pytest.raises(UserError, match="is a file, not a folder"):
        claim_output(tmp_path / "f", stage="x")


def test_sidecars_never_collide_with_their_file():
    assert sidecar("cache/c.json").name == "c.json.json"
    assert sidecar("cache/c.h5").name == "c.h5.json"


def test_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".scores.csv.tmp-{pid}.csv").write_text("half")
    (tmp_path / f".000.old-{pid}").mkdir()
    live = temp_sibling(tmp_path / "x.h5")
    live.write_text("in progress")
    (tmp_path / "user.tmp-12").write_text("not ours: no leading dot")
    elsewhere = tmp_path / f".chunk-000001.npz.tmp-othermachine-{pid}.npz"
    elsewhere.write_text("another machine's shard job, writing now")
    (tmp_path / temp_sibling("c.h5").name.replace(str(os.getpid()), str(pid))).write_text("this machine, dead")
    assert remove_stale_temps(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "user.tmp-12"])


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat, read here independently of core.io."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[19]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="start times come from /proc")
def test_a_temporary_whose_process_id_now_names_another_process_is_stale(tmp_path, monkeypatch):
    """A killed run's process id may belong to a new process by the time the next run looks (pids wrap,
    threads draw from the same counter): its temporary must not pass for that process's live one."""
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = start_time(other.pid)
        with monkeypatch.context() as m:
            m.setattr(os, "getpid", lambda: other.pid)
            live = temp_sibling(tmp_path / "run.json", "tmp", ".json")
        assert re.fullmatch(rf"\.run\.json\.tmp-\w+-{other.pid}-{start}\.json", live.name), live.name
        earlier = live.with_name(live.name.replace(f"-{start}.", f"-{int(start) - 1}."))
        live.write_text("the live process is writing")
        earlier.write_text("half: written under the same id by a process killed before this one started")
        assert remove_stale_temps(tmp_path) == 1
        assert [p.name for p in tmp_path.iterdir()] == [live.name]
    finally:
        other.stdin.close()
        other.wait()


def test_install_dir_replaces_a_finished_folder_in_one_step(tmp_path):
    final, tmp = tmp_path / "v", tmp_path / ".v.tmp-1"
    final.mkdir()
    (final / "old.png").write_text("old")
    tmp.mkdir()
    (tmp / "new.png").write_text("new")
    install_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new.png"] and sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_the_lock_is_held_against_other_processes_but_not_by_forked_children(tmp_path):
    lock = tmp_path / "x.lock"
    probe = ("import fcntl, sys\nfh = open(sys.argv[1], 'a')\n"
             "try:\n    fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")
    with exclusive_lock(lock, "x"):
        assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 3
        child = os.fork()
        if child == 0:  # a forked worker that outlives the lock's holder must not keep the lock
            import time
            time.sleep(3)
            os._exit(0)
    try:
        assert not lock.exists()
        lock.touch()
        assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 0
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_output_dir_rejects_names_that_are_not_top_level(tmp_path):
    run = OutputDir(tmp_path, "x")
    with pytest.raises(ValueError):
        run.own("a/b")
