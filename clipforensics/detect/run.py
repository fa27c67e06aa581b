"""The detect stage: a run's detector on new images, frame folders and videos; a table, files and contact sheets out.

    inputs -> prepare (workers: decode, sample, crop, preprocess) -> score (batched) -> explain -> sheet, rows

Everything is streamed: inputs are prepared one at a time, and each input's rows are written as soon as it is scored,
so a folder of 10k videos runs in flat memory and an interrupted run keeps nothing half-written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np
from torch.utils.data import DataLoader
from clipforensics.core.progress import progress, say as say_line

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, atomic_path, claim_output, install_dir, temp_sibling
from clipforensics.core.settings import to_dict
from clipforensics.data.scores import SCORES
from clipforensics.detect.calibrate import CALIBRATIONS, RAW_NOTE, Calibration, fit_calibration
from clipforensics.detect.explain import Occlusion, occlusion_map
from clipforensics.detect.inputs import FRAMES, OK, Item, Preparer, Sampling, expand, identity, worker_threads
from clipforensics.detect.rebuild import Rebuilt, Request, rebuild
from clipforensics.detect.score import Batcher, Scored, score_stream
from clipforensics.detect.settings import NO_CALIBRATION, DetectSettings
from clipforensics.detect.sheet import Verdict, contact_sheet
from clipforensics.measure.metrics import AGGREGATORS

DETECTIONS_CSV, DETECTIONS_JSON, FRAMES_CSV = "detections.csv", "detections.json", "frames.csv"
SHEETS, RELEVANCE = "sheets", "relevance"
INPUT_COLUMNS = ("input", "kind", "status", "frames", "faces", "score", "margin", "calibrated", "decision", "reason",
                 "sheet", "relevance")
FRAME_COLUMNS = ("input", "frame", "score", "calibrated", "x0", "y0", "x1", "y1", "fallback", "face_score")


def check_settings(s: DetectSettings) -> None:
    rules = ((s.batch_size >= 1, f"--batch-size must be at least 1, got {s.batch_size}"),
             (s.workers >= 0, f"--workers must be non-negative, got {s.workers}"),
             (s.frames_per_video is None or s.frames_per_video >= 1,
              f"--frames-per-video must be at least 1, got {s.frames_per_video}"),
             (s.threshold is None or 0 <= s.threshold <= 1, f"--threshold must be in [0, 1], got {s.threshold}"))
    bad = [message for ok, message in rules if not ok]
    if bad:
        raise UserError("; ".join(bad))
    check_names(s)


def check_names(s: DetectSettings) -> None:
    """Registry names refused before the run is rebuilt: --calibrate, which argparse leaves unchecked (its registry
    loads scikit-learn, not wanted for --help), and --video-agg for settings built without argparse."""
    AGGREGATORS.require(s.video_agg, "--video-agg")
    CALIBRATIONS.require(s.calibrate, "--calibrate", also=(NO_CALIBRATION,))


def occlusion_settings(s: DetectSettings, image_size: int) -> Occlusion:
    patch = s.explain_patch or max(1, image_size // 8)
    settings = Occlusion(patch, s.explain_stride or max(1, patch // 2), s.explain_fill, s.batch_size)
    settings.check(image_size)
    return settings


# ---------------------------------------------------------------- the output folder


def claim_out(settings: DetectSettings, items: list[Item]) -> OutputDir:
    """The output folder, refused before any work if it is not detect.py's own or overlaps the run or an input."""
    inputs = [("--run", settings.run)] + [("INPUT", item.path) for item in items]
    owned = claim_output(settings.out, stage="detect.py", inputs=inputs)
    owned.own(DETECTIONS_CSV, DETECTIONS_JSON, FRAMES_CSV, SHEETS, RELEVANCE)
    return owned


@contextlib.contextmanager
def staged_folder(final: Path, wanted: bool) -> Iterator[Path]:
    """Files of one kind (sheets, maps) go into a temporary folder that replaces `final` only at the end, so an
    earlier run's folder stays whole until this run has finished; a run that writes none removes the old one's
    files (a user's stay)."""
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        if wanted or final.exists():
            install_dir(tmp, final)  # a user's files in the old folder are carried over, never removed
        if not wanted:
            with contextlib.suppress(OSError):
                final.rmdir()  # gone unless it holds such files
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_name(folder: str, index: int, item: Item, suffix: str) -> str:
    """`folder/00042-<parent>_<name><suffix>`: unique by index, readable by name."""
    name = item.path.name if item.kind == FRAMES else item.path.stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{item.path.parent.name}_{name}").strip("_")
    return f"{folder}/{index:05d}-{stem[:80]}{suffix}"


class Writers:
    """detections.csv, frames.csv and detections.json, written row by row into temporaries, renamed at the end."""

    def __init__(self, stack: contextlib.ExitStack, out: Path, header: dict[str, Any], explain: bool,
                 sheets: bool) -> None:
        def opened(name: str) -> TextIO:
            return stack.enter_context(open(stack.enter_context(atomic_path(out / name)), "w", newline="",
                                            encoding="utf-8"))
        self.inputs = csv.DictWriter(opened(DETECTIONS_CSV), INPUT_COLUMNS)
        self.frames = csv.DictWriter(opened(FRAMES_CSV), FRAME_COLUMNS)
        self.inputs.writeheader()
        self.frames.writeheader()
        self.json = opened(DETECTIONS_JSON)
        text = json.dumps(header, indent=1, default=str)
        self.json.write(text[:text.rindex("}")].rstrip() + ',\n "inputs": [\n')
        self.first = True
        self.staged = {SHEETS: stack.enter_context(staged_folder(out / SHEETS, sheets)),
                       RELEVANCE: stack.enter_context(staged_folder(out / RELEVANCE, explain))}

    def path(self, name: str) -> Path:
        """Where a file named `sheets/...` or `relevance/...` is written until the run ends."""
        folder, _, rest = name.partition("/")
        return self.staged[folder] / rest

    def add(self, row: dict[str, Any], frames: list[dict[str, Any]]) -> None:
        self.inputs.writerow({k: "" if row.get(k) is None else row[k] for k in INPUT_COLUMNS})
        for frame in frames:
            box = frame.get("box") or [None] * 4
            flat = {**frame, "input": row["input"], "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]}
            self.frames.writerow({k: "" if flat.get(k) is None else flat[k] for k in FRAME_COLUMNS})
        self.json.write(("" if self.first else ",\n") + json.dumps({**row, "frames": frames}, default=float))
        self.first = False

    def close(self) -> None:
        self.json.write("\n ]\n}\n")


# ---------------------------------------------------------------- rows and the printed table


def _calibrated(calibration: Calibration | None, score: float | None) -> float | None:
    return None if calibration is None or score is None else float(calibration(score)[0])


def input_row(scored: Scored, sheet: str | None, relevance: str | None, threshold: float,
              calibration: Calibration | None) -> dict[str, Any]:
    """One input's row: its raw score, margin to the threshold (score - threshold) and calibrated P(fake) if fitted."""
    item = scored.prepared
    margin = None if scored.score is None else scored.score - threshold
    return {"input": str(item.item.path), "kind": item.item.kind, "status": item.status, "frames": item.n_frames,
            "faces": item.faces_found, "score": scored.score, "margin": margin,
            "calibrated": _calibrated(calibration, scored.score), "decision": scored.decision, "reason": item.reason,
            "sheet": sheet, "relevance": relevance}


def frame_rows(scored: Scored, calibration: Calibration | None) -> list[dict[str, Any]]:
    return [{**frame, "score": float(s), "calibrated": _calibrated(calibration, float(s))}
            for frame, s in zip(scored.prepared.frames, scored.frame_scores)]


def save_maps(path: Path, maps: list[np.ndarray], scored: Scored) -> None:
    """Relevance maps of one input (frames x H x W, model-input pixels) with their frame names and scores."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, relevance=np.stack(maps).astype(np.float32), scores=scored.frame_scores,
                            frames=np.array([str(f["frame"]) for f in scored.prepared.frames]))


def _number(value: float | None, form: str) -> str:
    return "" if value is None else format(value, form)


def table_line(row: dict[str, Any], calibrated: bool) -> str:
    """The printed row of one input; the P(fake) column only when scores are calibrated."""
    faces = "-" if row["faces"] is None else str(row["faces"])
    verdict = (row["decision"] or "").upper() if row["status"] == OK else f"{row['status']}: {row['reason']}"
    probability = f" {_number(row['calibrated'], '.3f'):>7}" if calibrated else ""
    return (f"{_short(row['input'], 48):<48} {row['frames']:>6} {faces:>5} {_number(row['score'], '.4f'):>7} "
            f"{_number(row['margin'], '+.4f'):>7}{probability}  {verdict}")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def table_header(calibrated: bool) -> str:
    probability = f" {'P(fake)':>7}" if calibrated else ""
    return f"{'input':<48} {'frames':>6} {'faces':>5} {'score':>7} {'margin':>7}{probability}  decision"


def header_lines(rebuilt: Rebuilt, calibration: Calibration | None) -> list[str]:
    ident = rebuilt.loaded.identity
    lines = [f"run {rebuilt.run} ({rebuilt.kind} {rebuilt.scorer_name}) on {ident['model']} / {ident['pretrained']}, "
             f"{ident['image_size']} px, {rebuilt.loaded.precision} on {rebuilt.loaded.device}",
             f"decision: fake if the video score >= {rebuilt.threshold:.4f} ({rebuilt.threshold_note}); "
             "margin = score - threshold", calibration.describe() if calibration else RAW_NOTE,
             rebuilt.crop_note, *rebuilt.notes]
    if rebuilt.attrs.get("random_weights"):
        lines.append("RANDOM WEIGHTS: this detector proves the machinery, not detection skill")
    return lines


# ---------------------------------------------------------------- the run


def _prepared(items: list[Item], sampling: Sampling, rebuilt: Rebuilt, workers: int) -> Iterator:
    preparer = Preparer(items, sampling, rebuilt.loaded.pixels, rebuilt.loaded.image_size)
    loader = DataLoader(preparer, batch_size=None, shuffle=False,
                        num_workers=workers, collate_fn=identity, worker_init_fn=worker_threads if workers else None,
                        prefetch_factor=2 if workers else None)
    return iter(loader)


@dataclass(frozen=True)
class Scoring:
    """What every scored input is written with: the detector, its threshold and calibration, the explanation."""

    rebuilt: Rebuilt
    occlusion: Occlusion | None
    calibration: Calibration | None
    sheets: bool


def _files(scored: Scored, index: int, scoring: Scoring, writers: Writers) -> tuple[str | None, str | None]:
    """The input's relevance maps and contact sheet, written where the run stages them: (sheet, relevance)."""
    item, rebuilt, maps = scored.prepared.item, scoring.rebuilt, None
    sheet = relevance = None
    if scoring.occlusion is not None:
        maps = [occlusion_map(rebuilt.score_images, image, scoring.occlusion)[0]
                for image in rebuilt.model_input(scored.prepared.pixels)]
        relevance = file_name(RELEVANCE, index, item, ".npz")
        save_maps(writers.path(relevance), maps, scored)
    if scoring.sheets:
        sheet = file_name(SHEETS, index, item, ".png")
        calibration = scoring.calibration
        verdict = Verdict(rebuilt.threshold, _calibrated(calibration, scored.score),
                          f"{calibration.method} on {calibration.n_val} validation frames" if calibration else "")
        contact_sheet(scored, writers.path(sheet), verdict, maps, str(item.path))
    return sheet, relevance


def _scoring(settings: DetectSettings, rebuilt: Rebuilt) -> Scoring:
    occlusion = occlusion_settings(settings, rebuilt.loaded.image_size) if settings.explain else None
    calibration = (None if settings.calibrate == NO_CALIBRATION else
                   fit_calibration(settings.calibrate, rebuilt.run / SCORES))
    return Scoring(rebuilt, occlusion, calibration, settings.sheets)


def detect(inputs: list[str], settings: DetectSettings) -> dict[str, Any]:
    """Score every input with the run's detector; return the summary (counts and where the files are)."""
    check_settings(settings)
    items = expand(inputs)
    rebuilt = rebuild(settings.run, Request(settings.device, settings.precision, settings.threshold, settings.crop))
    scoring = _scoring(settings, rebuilt)
    calibration = scoring.calibration
    owned = claim_out(settings, items)  # locked while it lives: to the end of this function
    sampling = Sampling(rebuilt.crop, settings.frames_per_video, rebuilt.frames_per_video)
    header = {"detector": rebuilt.describe(), "settings": to_dict(settings), "video_agg": settings.video_agg,
              "scores": "raw, uncalibrated: no probability of fake" if calibration is None else
              "raw scores, with calibrated probabilities of fake in 'calibrated'", "margin": "score - threshold",
              "calibration": calibration.record() if calibration else None, "package_version": __version__}
    say = (lambda line: None) if settings.as_json else say_line
    for line in [*header_lines(rebuilt, calibration), table_header(calibration is not None)]:
        say(line)
    counts = {"inputs": len(items), "scored": 0, "fake": 0, "failed": 0, "no face": 0}
    batcher = Batcher(rebuilt.score_images, settings.batch_size, rebuilt.threshold, settings.video_agg)
    with contextlib.ExitStack() as stack:
        writers = Writers(stack, owned.path, header, scoring.occlusion is not None, settings.sheets)
        stream = score_stream(_prepared(items, sampling, rebuilt, settings.workers), batcher)
        bar = stack.enter_context(progress(total=len(items), unit="input", desc="detect"))
        for index, scored in enumerate(stream):
            sheet = relevance = None
            if scored.score is not None:
                sheet, relevance = _files(scored, index, scoring, writers)
                counts["scored"] += 1
                counts["fake"] += scored.decision == "fake"
            else:
                counts[scored.prepared.status] += 1
            row = input_row(scored, sheet, relevance, rebuilt.threshold, calibration)
            writers.add(row, frame_rows(scored, calibration))
            say(table_line(row, calibration is not None))
            bar.update(1)
        writers.close()
    return _close(counts, owned.path, settings.as_json, say)


def _close(counts: dict[str, int], out: Path, as_json: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """The closing line (and the JSON record with --json); no input scored is an error, not an empty result."""
    unscored = counts["failed"] + counts["no face"]
    say(f"{counts['scored']} of {counts['inputs']} inputs scored, {counts['fake']} called fake"
        + (f"; {unscored} could not be scored (status and reason in {out / DETECTIONS_CSV})" if unscored else "")
        + f"; files in {out}")
    if as_json:
        with open(out / DETECTIONS_JSON, encoding="utf-8") as fh:
            shutil.copyfileobj(fh, sys.stdout)
    if not counts["scored"]:
        raise UserError(f"none of the {counts['inputs']} inputs could be scored (reasons in {out / DETECTIONS_CSV})")
    return {**counts, "out": str(out)}
