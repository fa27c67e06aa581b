"""Named target sets (`finetune_lora.py --targets`): which modules of the image tower LoRA, DoRA and svd adapt.

Plain regexes and no torch or peft, so the fine-tuning options (their help lists these names) parse before the
methods load."""

from __future__ import annotations

from clipforensics.core.registry import Registry

BLOCK = r"visual\.transformer\.resblocks\.\d+"
ATTENTION = BLOCK + r"\.attn"
MLP = BLOCK + r"\.mlp\.(?:c_fc|c_proj)"
# timm's ViTs (`--model timm:NAME`, extract/encoders/timm.py): plain nn.Linear projections, whose forward is called.
TIMM_BLOCK = r"visual\.blocks\.\d+"
TIMM_ATTENTION = TIMM_BLOCK + r"\.attn\.(?:qkv|proj)"
TIMM_MLP = TIMM_BLOCK + r"\.mlp\.(?:fc1|fc2)"
TARGET_SETS: Registry[tuple[str, ...]] = Registry("target set")
"""Named LoRA targets: regexes over module names (fully matched), image tower only; each set names open_clip's and
timm's modules, and a tower matches only its own."""
TARGET_SETS.register("attn", (ATTENTION, TIMM_ATTENTION))
TARGET_SETS.register("attn+mlp", (ATTENTION, MLP, TIMM_ATTENTION, TIMM_MLP))
TARGET_SETS.register("mlp", (MLP, TIMM_MLP))


def target_regex(name: str) -> str:
    """One regex matching every module of the named set."""
    return "|".join(f"(?:{pattern})" for pattern in TARGET_SETS.get(name))
