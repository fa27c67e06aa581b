"""Which epoch's weights are the result of a LoRA run (`--select`): the one validation prefers, or the last one.

A rule sees each finished epoch's log row and the row of the epoch chosen so far (epoch 0, the untrained model, to
begin with) and says whether the new epoch replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from clipforensics.core.registry import Registry

Row = dict[str, Any]


@dataclass(frozen=True)
class Selection:
    """A rule: what it selects on (recorded with the scores) and whether `row` replaces the chosen row."""

    description: str
    replaces: Callable[[Row, Row], bool]


def selection_key(row: Row) -> tuple[float, float]:
    """Best epoch: highest val video AUC, then val frame AUC; the earlier epoch wins ties."""
    return row["val_video_auc"], row["val_frame_auc"]


SELECTIONS: Registry[Selection] = Registry("selection rule")
"""`--select` rules, by name."""
SELECTIONS.register("val", Selection("val video AUC",
                                     lambda row, chosen: selection_key(row) > selection_key(chosen)))
SELECTIONS.register("last", Selection("last epoch", lambda row, chosen: True))
