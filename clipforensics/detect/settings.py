"""detect.py's settings. Light on purpose (no torch, open_clip, scikit-learn, h5py): the script parses its options
with these before it imports the stage, so `--help` and a mistyped option answer at once. The calibration names are
therefore checked after parsing, against their registry (`detect.run.check_settings`: it needs scikit-learn); the
aggregators come from theirs (`measure.metrics`, numpy and pandas only)."""

from __future__ import annotations

from dataclasses import dataclass

from clipforensics.core.settings import PRECISIONS, DeviceSettings, option
from clipforensics.detect.fills import FILLS
from clipforensics.measure.metrics import AGGREGATORS

RUN_PRECISION = "run"
"""`--precision run`: the precision the run's scores were computed in."""
NO_CALIBRATION = "none"


@dataclass
class DetectSettings(DeviceSettings):
    """Options of detect.py (the inputs are positional)."""

    run: str = option(None, "a fitted head folder (runs/NAME/logreg) or a LoRA run folder (runs/NAME-lora)",
                      required=True, metavar="RUN")
    out: str = option("detections", "folder for detections.csv, detections.json, frames.csv and sheets/",
                      metavar="DIR")
    crop: bool = option(True, "crop faces as the run's data root was cropped (--no-crop: the inputs are face "
                              "crops already, e.g. frames of a prepared data root)")
    frames_per_video: int | None = option(
        None, "frames sampled evenly from each video or frame folder (default: as the run's data root was "
              "prepared; without a record, all frames of a folder and 32 of a video)", metavar="N",
        formerly="--frames")
    batch_size: int = option(64, "images per forward pass (frames of several inputs share a batch)")
    precision: str = option(RUN_PRECISION, "run (the precision the run's scores were computed in), or auto, fp32, "
                                           "fp16, bf16", choices=(RUN_PRECISION, *PRECISIONS))
    threshold: float | None = option(None, "decision threshold (default: the EER threshold of the run's "
                                           "validation frames, as evaluate.py uses)", metavar="T")
    video_agg: str = option("mean", "video score from its frame scores, as evaluate.py's --video-agg",
                            choices=tuple(AGGREGATORS))
    sheets: bool = option(True, "write a contact sheet PNG per input")
    explain: bool = option(False, "add a relevance map per frame (occlusion sensitivity) to the contact sheets and "
                                  "detections.json")
    explain_patch: int | None = option(None, "occluded window side in model-input pixels (default: 1/8 of the input)",
                                       metavar="PX")
    explain_stride: int | None = option(None, "step between windows (default: half the window)", metavar="PX")
    explain_fill: str = option("blur", "what an occluded window shows: blur (the image blurred) or mean (the "
                                       "normalisation's mean colour)", choices=tuple(FILLS))
    calibrate: str = option(NO_CALIBRATION, "map raw scores to probabilities of fake fitted on the run's validation "
                                            "frames: platt (logistic regression on the score) or isotonic; none: "
                                            "scores stay raw (uncalibrated, no probability)", metavar="NAME")
    as_json: bool = option(False, "print machine-readable JSON only (detections.json) on stdout", flag="--json")
