"""DoRA (`--method dora`, Liu et al. 2024) through peft's `use_dora=True`: each targeted weight is split into a
magnitude per output and a direction, the direction gets a LoRA update of rank r, the magnitudes train too.

MLP targets only (`--targets mlp`, c_fc and c_proj of each block): peft 0.21 refuses DoRA on
`nn.MultiheadAttention` ("MultiheadAttention does not support DoRA (yet)"), the fused attention path open_clip's
image tower uses, so an attention target set is a one-line error here. Saving, loading and merging are LoRA's
(peft's adapter folder; `merge_and_unload` folds magnitude and direction back into plain weights).
"""

from __future__ import annotations

from typing import Any

from clipforensics.core.errors import UserError
from clipforensics.lora.methods.base import METHODS
from clipforensics.lora.methods.lora import Lora
from clipforensics.lora.targets import ATTENTION, TARGET_SETS


class Dora(Lora):
    """LoRA with weight decomposition; targets restricted to the MLP (see the module docstring)."""

    name = "dora"
    title = "DoRA"
    use_dora = True

    def check_settings(self, settings: Any) -> None:
        super().check_settings(settings)
        if ATTENTION in TARGET_SETS.get(settings.targets):
            raise UserError(f"--method dora takes MLP targets only (--targets mlp): peft 0.21 has no DoRA for "
                            f"open_clip's fused nn.MultiheadAttention, which --targets {settings.targets} adapts")


METHODS.register("dora", Dora())
