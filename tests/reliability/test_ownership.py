"""Class: ownership of output folders. A record is never trusted as written, ownership is per file at every
depth, one run at a time writes an output, and a killed rerun never leaves a mix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import evaluate
import fit_heads
from clipforensics.core.errors import UserError
from clipforensics.core.io import RECORD, claim_output, install_dir, temp_sibling, write_text
from clipforensics.evaluate import evaluation
from clipforensics.evaluate.settings import EvaluateSettings
from reliability.helpers import one_line_error, tree
from reliability.test_report_replaced import predictions

BAD = ["../victim", ".", "..", "/abs", "a/b", "", 3, None, RECORD]


@pytest.mark.parametrize("entry", BAD)
def test_a_record_naming_anything_but_a_plain_name_inside_is_refused_as_damaged(tmp_path, entry):
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"stage": "fit_heads", "entries": ["run.json", entry], "version": 1}))
    with pytest.raises(UserError, match="is damaged"):
        claim_output(out, stage="fit_heads")
    assert (tmp_path / "victim" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("files", [["../victim/notes.txt"], ["run/../../victim/notes.txt"], ["/etc/passwd"], "run/x"])
def test_recorded_files_outside_the_folder_are_refused_too(tmp_path, files):
    out = tmp_path / "out"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"stage": "x", "entries": ["run"], "files": files, "version": 1}))
    with pytest.raises(UserError, match="is damaged"):
        claim_output(out, stage="x")


def test_a_damaged_record_is_one_line_from_evaluate_and_nothing_is_removed(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (tmp_path / "victim").mkdir()
    (out / "notes.md").write_text("mine")
    (out / RECORD).write_text(json.dumps({"stage": "evaluate", "entries": ["../victim", "."], "version": 1}))
    scores = predictions(tmp_path / "p.csv", 0)
    before = tree(tmp_path)
    assert evaluate.main(["--predictions", scores, "--out", str(out), "--bootstrap", "0", "--overwrite"]) == 2
    assert "is damaged" in one_line_error(capsys)
    assert tree(tmp_path) == before


def test_a_users_file_inside_a_recorded_folder_survives_a_clear_at_every_depth(tmp_path):
    run = claim_output(tmp_path / "run", stage="fit_heads")
    run.own("logreg", "run.json")
    write_text(run.path / "run.json", "{}")
    write_text(run.path / "logreg" / "scores.csv", "x")
    write_text(run.path / "logreg" / "deep" / "model.bin", "x")
    (run.path / "logreg" / "NOTES.md").write_text("mine")
    (run.path / "logreg" / "deep" / "NOTES.md").write_text("mine too")
    del run
    again = claim_output(tmp_path / "run", stage="fit_heads")
    again.clear()
    left = sorted(str(p.relative_to(again.path)) for p in again.path.rglob("*"))
    assert left == [RECORD, "logreg", "logreg/NOTES.md", "logreg/deep", "logreg/deep/NOTES.md"]
    write_text(again.path / "logreg" / "scores.csv", "new")  # the folder is still the stage's to write into
    again.clear()
    assert (again.path / "logreg" / "NOTES.md").read_text() == "mine" and not (again.path / "logreg" / "scores.csv").exists()


def test_a_recorded_path_through_a_link_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "scores.csv").write_text("not the stage's")
    run = claim_output(tmp_path / "run", stage="x")
    run.own("head")
    write_text(run.path / "head" / "scores.csv", "x")
    (run.path / "head" / "scores.csv").unlink()
    (run.path / "head").rmdir()
    (run.path / "head").symlink_to(outside)
    run.clear()
    assert (outside / "scores.csv").read_text() == "not the stage's"


def test_a_folder_installed_into_a_recorded_folder_keeps_the_users_files_in_it(tmp_path):
    run = claim_output(tmp_path / "out", stage="detect.py")
    run.own("sheets")
    for text in ("old", "new"):
        tmp = temp_sibling(run.path / "sheets")
        tmp.mkdir()
        (tmp / f"{text}.png").write_text(text)
        install_dir(tmp, run.path / "sheets")
        if text == "old":
            (run.path / "sheets" / "NOTES.md").write_text("mine")
    assert sorted(p.name for p in (run.path / "sheets").iterdir()) == ["NOTES.md", "new.png"]


def test_fit_heads_overwrite_keeps_notes_inside_a_head_folder(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg", "--out", str(run)]) == 0
    (run / "logreg" / "NOTES.md").write_text("mine")
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "ridge", "--out", str(run),
                           "--real-split", "60/20/20", "--overwrite"]) == 0
    assert sorted(p.name for p in (run / "logreg").iterdir()) == ["NOTES.md"]


HOLDER = textwrap.dedent("""
    import sys, time
    from clipforensics.core.io import claim_output
    held = claim_output(sys.argv[1], stage=sys.argv[2])
    held.own("x")
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture()
def held_elsewhere(tmp_path):
    """Another process holding an output, as a second run started while the first writes."""
    procs = []

    def hold(out, stage):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), stage], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_run_into_an_output_being_written_is_one_line(tmp_path, held_elsewhere, capsys, tiny_cache):
    report, run = tmp_path / "report", tmp_path / "run"
    held_elsewhere(report, "evaluate")
    held_elsewhere(run, "fit_heads")
    assert evaluate.main(["--predictions", predictions(tmp_path / "p.csv", 0), "--out", str(report)]) == 2
    assert "another process is writing" in one_line_error(capsys)
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg", "--out", str(run)]) == 2
    assert "another process is writing" in one_line_error(capsys)
    with pytest.raises(UserError, match="another process is writing"):
        claim_output(tmp_path / "report", stage="evaluate")


def test_the_lock_goes_with_the_run_and_one_process_may_claim_twice(tmp_path):
    first = claim_output(tmp_path / "out", stage="x")
    first.own("a")
    second = claim_output(tmp_path / "out", stage="x")
    assert second.lock is first.lock
    del first, second
    probe = "import sys\nfrom clipforensics.core.io import claim_output\nclaim_output(sys.argv[1], stage='x')\n"
    assert subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out")]).returncode == 0


def test_a_killed_rerun_leaves_the_old_report_whole_and_foreign_files_stay(tmp_path, capsys, monkeypatch):
    files = [predictions(tmp_path / "p.csv", 0)]
    out = tmp_path / "report"
    assert evaluate.main(["--predictions", *files, "--out", str(out), "--bootstrap", "0"]) == 0
    (out / "notes.md").write_text("mine")
    before = tree(out)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "write_report", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate([], EvaluateSettings(out=str(out), predictions=tuple(files), bootstrap=0,
                                                            video_agg="max"))
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "report"]
    monkeypatch.undo()
    assert evaluate.main(["--predictions", *files, "--out", str(out), "--bootstrap", "0", "--video-agg", "max"]) == 0
    assert (out / "notes.md").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["settings"]["video_agg"] == "max"


@pytest.mark.parametrize("wanted", [True, False])
def test_detect_replacing_its_sheets_keeps_a_users_file_in_them(tmp_path, wanted):
    from clipforensics.detect.run import staged_folder
    run = claim_output(tmp_path / "out", stage="detect.py")
    run.own("sheets")
    with staged_folder(run.path / "sheets", True) as tmp:
        (tmp / "00000-a.png").write_text("old")
    (run.path / "sheets" / "NOTES.md").write_text("mine")
    with staged_folder(run.path / "sheets", wanted) as tmp:
        if wanted:
            (tmp / "00000-b.png").write_text("new")
    assert sorted(p.name for p in (run.path / "sheets").iterdir()) == [*(["00000-b.png"] if wanted else []), "NOTES.md"]
