"""What an occluded window shows (`detect.py --explain-fill`), by name.

Light on purpose: a fill reaches torch only through the image tensor it is given (and loads torch's functional ops
when it runs), so detect.py lists the names in its `--help` without loading torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from clipforensics.core.registry import Registry

if TYPE_CHECKING:
    import torch


def _mean_fill(image: torch.Tensor) -> torch.Tensor:
    """The normalisation's mean colour (zero after normalising): no texture, no edge, no colour cast."""
    return image.new_zeros(image.shape)


def _blur_fill(image: torch.Tensor) -> torch.Tensor:
    """A strong blur of the image itself: keeps the colours and layout, removes local detail."""
    import torch.nn.functional as F

    side = max(3, (image.shape[-1] // 8) | 1)
    kernel = image.new_ones((3, 1, side, side)).float() / (side * side)
    padded = F.pad(image[None].float(), [side // 2] * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=3)[0].to(image.dtype)


FILLS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("occlusion fill")
FILLS.register("mean", _mean_fill)
FILLS.register("blur", _blur_fill)
