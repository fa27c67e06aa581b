"""Class tokens of intermediate residual blocks, taken with forward hooks during the one image forward.

Intermediate CLIP blocks often generalise better than the last one (RINE, 2024); storing them while the
final embedding is computed costs a copy of one token per block and image, not another pass.
Block k's token is the residual stream after block k (before ln_post and the projection), so the last
block's token, through ln_post and proj, is the final embedding (tests/test_layers.py). A timm ViT's blocks
(`visual.blocks`) are tapped the same way: its class token after block k, before the final norm.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from clipforensics.core.errors import UserError

LAYER_GROUP = "layers"


@dataclass(frozen=True)
class TowerBlocks:
    """Where one library's ViT keeps its residual blocks, and whether their outputs are batch-first."""

    blocks: Callable[[torch.nn.Module], torch.nn.ModuleList | None]
    batch_first: Callable[[torch.nn.Module], bool]
    refusal: Callable[[torch.nn.Module], str | None] = lambda visual: None


def _timm_refusal(visual: torch.nn.Module) -> str | None:
    if getattr(visual, "cls_token", None) is None:
        return "--layers stores class tokens; this timm tower has no class token (it pools its patch tokens)"
    return None


TOWER_BLOCKS = (
    TowerBlocks(lambda visual: getattr(getattr(visual, "transformer", None), "resblocks", None),
                lambda visual: bool(getattr(visual.transformer, "batch_first", True))),
    TowerBlocks(lambda visual: getattr(visual, "blocks", None), lambda visual: True, _timm_refusal),
)
"""open_clip's ViT (visual.transformer.resblocks), then timm's (visual.blocks)."""


def _tower(model: torch.nn.Module) -> tuple[TowerBlocks, torch.nn.ModuleList]:
    visual = getattr(model, "visual", None)
    for kind in TOWER_BLOCKS:
        blocks = kind.blocks(visual) if visual is not None else None
        if blocks is not None:
            refusal = kind.refusal(visual)
            if refusal:
                raise UserError(refusal)
            return kind, blocks
    raise UserError("--layers needs a ViT image tower (open_clip's visual.transformer.resblocks or timm's "
                    "visual.blocks); this model has none")


def vision_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The image tower's blocks; a tower without them (e.g. a ConvNeXt) cannot give layers."""
    return _tower(model)[1]


def parse_layers(spec: str | None, n_blocks: int) -> tuple[int, ...]:
    """'all' -> every block, 'last' -> the final one, '0,4,8' -> those (negative counts from the end)."""
    if spec is None:
        return ()
    if not spec.strip():
        raise UserError("--layers names no block; write all, last or indices like 0,4,8")
    if spec == "all":
        return tuple(range(n_blocks))
    if spec == "last":
        return (n_blocks - 1,)
    chosen = []
    for part in spec.split(","):
        try:
            k = int(part)
        except ValueError:
            raise UserError(f"--layers takes all, last or block indices like 0,4,8; got {spec!r}") from None
        if not -n_blocks <= k < n_blocks:
            raise UserError(f"--layers {k}: this model has blocks 0..{n_blocks - 1}")
        chosen.append(k % n_blocks)
    return tuple(sorted(set(chosen)))


def layer_key(k: int) -> str:
    return f"{LAYER_GROUP}/{k}"


class BlockTaps:
    """Forward hooks that keep the class token of chosen blocks while `capture()` is open.

    The tokens stay on the model's device until `tokens()` moves them all in one copy: a copy per block
    would make the host wait for the device at every block of every batch (on a GPU, the next block's
    kernels could not be queued while the current ones run)."""

    def __init__(self, model: torch.nn.Module, layers: tuple[int, ...]) -> None:
        kind, self.blocks = _tower(model)
        self.layers, self.batch_first = layers, kind.batch_first(model.visual)
        self.taken: dict[int, torch.Tensor] = {}

    def _hook(self, k: int):
        def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            token = output[:, 0] if self.batch_first else output[0]
            self.taken[k] = token.clone()  # a copy: a view would keep the block's whole output alive
        return keep

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Hooks live only inside the block, so other forwards (perturbed copies, prompts) are not tapped."""
        self.taken = {}
        handles = [self.blocks[k].register_forward_hook(self._hook(k)) for k in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.inference_mode()
    def tokens(self) -> dict[int, np.ndarray]:
        """The last capture's tokens by block, on the CPU in the cache's float16, moved in one copy.

        Rounded to float16 on the device (the same round-to-nearest-even numpy applies when a chunk is
        saved): half the bytes to copy, and no conversion pass on the host, which feeds the GPU."""
        if not self.taken:
            return {}
        stacked = torch.stack([self.taken[k] for k in self.layers]).half().cpu().numpy()
        self.taken = {}
        return dict(zip(self.layers, stacked))
