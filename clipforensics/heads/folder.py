"""The rules of a fit_heads run folder: which files it holds and when a new fit or layer sweep may use it.

A folder holds the heads of one cache and protocol (run.json) and may hold a layer sweep of the same cache and
protocol beside them (layer_sweep.*). A fit or sweep of another study is refused naming every differing
field, or under --overwrite replaces what fit_heads wrote there (`core.identity.claim`); foreign files stay.
The heads stage and the layer sweep both claim the folder here, so neither reaches into the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from clipforensics.core.identity import claim
from clipforensics.core.io import OutputDir, claim_output

STAGE = "fit_heads"
RUN_FILE = "run.json"
RUN_BOOKKEEPING = ("fit", "package_version", "finished")  # run.json keys beside the identity
SWEEP_RECORD = "layer_sweep.json"
SWEEP_FILES = ("layer_sweep.csv", "layer_sweep.md", SWEEP_RECORD, "layer_sweep.png")
SWEEP_IDENTITY = ("cache", "cache_identity", "splits")  # what a sweep and a fit_heads run in one folder must share
MADE_WITH = "another cache or protocol"


def claim_run_dir(out: Path, identity: Mapping[str, Any], overwrite: bool, caches: list[str]) -> OutputDir:
    """The run folder, owned by this stage and tied to one cache and protocol.

    Heads of another cache or protocol are never mixed in: refused, or with --overwrite replaced (only
    the files this stage wrote go). A run in which no head finished (a failed or killed start) is no
    result and is replaced without --overwrite, so it cannot block the next valid run.
    """
    inputs = [("--cache", caches[0]), *(("--test-cache", c) for c in caches[1:])]
    run_dir = claim_output(out, stage=STAGE, inputs=inputs)
    run_dir.remove_stale_temps()
    refuse_other_study(run_dir, SWEEP_RECORD, identity, overwrite)
    old = run_dir.read_record(RUN_FILE)
    if old is None or not old.get("finished"):
        run_dir.clear(keep=SWEEP_FILES)  # a layer sweep of this cache and protocol is a result: it stays
        return run_dir
    keys = sorted(set(identity) | (set(old) - set(RUN_BOOKKEEPING)))  # a key only the old run has differs too
    claim(old, identity, str(run_dir.path / RUN_FILE), overwrite=overwrite, replace=run_dir.clear, keys=keys,
          made_with=MADE_WITH)
    return run_dir


def refuse_other_study(run_dir: OutputDir, recorded: str, identity: Mapping[str, Any], overwrite: bool) -> bool:
    """Refuse a folder whose `recorded` file (layer_sweep.json, run.json) was made from another cache or protocol
    unless --overwrite, which clears what fit_heads wrote there (True then): a sweep and a run of two studies never
    share a folder, and neither silently replaces the other."""
    if recorded not in run_dir.entries or not (run_dir.path / recorded).is_file():
        return False
    old = run_dir.read_record(recorded) or {}
    return not claim(old, identity, str(run_dir.path / recorded), overwrite=overwrite, replace=run_dir.clear,
                     keys=SWEEP_IDENTITY, made_with=MADE_WITH)
