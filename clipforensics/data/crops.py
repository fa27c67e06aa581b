"""How a data root's face crops were made, as prepare_frames.py records it in DATA_ROOT/prepare.json.

The same paths can hold aligned or unaligned crops, 224 or 256 pixels: the manifest cannot tell.
Extraction copies the recipe into the cache (attribute `crops`), where it is part of the cache's
identity, so a head fitted on one kind of crop is never silently applied to features of another,
and detect.py crops new videos by it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clipforensics.core.errors import UserError

PREPARE_FILE = "prepare.json"


def read_crop_recipe(data_root: str | Path) -> dict[str, Any] | None:
    """The crop recipe of a data root made by prepare_frames.py; None for frames prepared elsewhere."""
    path = Path(data_root) / PREPARE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        recipe = record["crops"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a prepare_frames.py record ({type(exc).__name__}: {exc}); "
                        "remove it if these frames were prepared another way") from None
    if not isinstance(recipe, dict):
        raise UserError(f"{path}: 'crops' is not an object")
    return recipe
