"""What every run records, read back: the cache it was made from, its validation threshold, its face crops.

A reader takes nothing from the command line that the run recorded, and refuses with one line what it cannot
read exactly (a cache gone, no validation rows, other face models), since "nearly" gives other scores silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.paths import sha256_file
from clipforensics.core.io import read_json_object, sidecar
from clipforensics.data.cache import read_attrs
from clipforensics.data.crops import PREPARE_FILE, read_crop_recipe
from clipforensics.frames.crops import CropRecipe
from clipforensics.frames.detectors import file_sha256, model_file
from clipforensics.measure.metrics import choose_threshold


def cache_attrs(cache: str | None, run: Path) -> dict[str, Any]:
    """The attributes of the cache a run was made from: the .h5 itself, else its .json sidecar."""
    if not cache:
        raise UserError(f"{run} does not name the cache it was made from; it cannot be rebuilt")
    path = Path(cache)
    if path.is_file():
        return read_attrs(path)
    sides = [sidecar(path), path.with_suffix(".json")]  # NAME.h5.json, or NAME.json as older caches have it
    for side in sides:
        if side.is_file():
            return read_json_object(side, f"the attributes of {path}")
    raise UserError(f"cannot rebuild {run}: its cache {path} (and {sides[0].name}) is gone, and with it the record "
                    "of the model, weights and preprocessing the run was trained on")


def check_artifact(path: Path, recorded: Any, fix: str) -> None:
    """A file a run loads must be the one the run wrote (its sha256 recorded then): a model or head copied in from
    another run would otherwise score at this run's threshold. Runs that recorded no hash are refused too."""
    if not recorded:
        raise UserError(f"{path.parent} records no sha256 of {path.name} (written before run files were hashed); {fix}")
    found = sha256_file(path)
    if found != recorded:
        raise UserError(f"{path} is not the file its run wrote (sha256 {found[:12]}, recorded {str(recorded)[:12]}: "
                        f"copied from another run?); {fix}")


def validation_threshold(scores: Path) -> tuple[float, str]:
    """The decision threshold the evaluator uses: EER on the run's validation frames, and how it was chosen."""
    if not scores.is_file():
        raise UserError(f"cannot rebuild the decision threshold: {scores} is missing (pass --threshold to set one)")
    table = pd.read_csv(scores, usecols=["label", "score", "split"], dtype={"split": str}, keep_default_na=False)
    if not (table["split"] == "val").any():
        raise UserError(f"{scores} has no validation rows to take a threshold from (pass --threshold)")
    threshold, note = choose_threshold(table)
    return threshold, f"{note} of the run"


def _crop_record(attrs: Mapping[str, Any], run: Path) -> tuple[dict[str, Any] | None, str]:
    """(the data root's crop record or None, where it was read). Caches record it (attribute `crops`, None for
    frames not made by prepare_frames.py); older ones are read from the data root's prepare.json."""
    if "crops" in attrs:
        return attrs["crops"], f"the cache of {run}"
    root = attrs.get("data_root")
    if root and Path(root).is_dir():
        return read_crop_recipe(root), str(Path(root) / PREPARE_FILE)
    raise UserError(f"cannot tell how the frames of {run} were cropped: its data root {root} is gone and the cache "
                    "records no face-crop recipe; pass --no-crop if the inputs are face crops already")


def _check_face_models(record: Mapping[str, Any], run: Path) -> None:
    """The detector and landmark weights files must be the ones the run's crops were made with (sha256)."""
    for name, digest in sorted((record.get("models") or {}).items()):
        if file_sha256(model_file(name)) != digest:
            raise UserError(f"the face model {model_file(name)} differs from the one the frames of {run} were "
                            f"cropped with (sha256 {str(digest)[:16]}); install the recorded face models")


def crop_recipe(attrs: Mapping[str, Any], run: Path) -> tuple[CropRecipe | None, str]:
    """The face-crop recipe of the run's data root (None when its frames were used as they are), and a note."""
    record, source = _crop_record(attrs, run)
    if record is None:
        return None, ("no face crop: the run's frames were not made by prepare_frames.py, so they were used as they "
                      "are, and so are the inputs'")
    recipe = CropRecipe.from_record(record, source)
    _check_face_models(record, run)
    return recipe, f"faces cropped as the run's data root was: {recipe.describe()}"
