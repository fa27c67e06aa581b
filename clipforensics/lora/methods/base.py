"""What a fine-tuning method is: how it attaches to open_clip's image tower, which tensors train, which loss terms
it adds, and how its change is saved, loaded and folded into plain open_clip weights.

A method is one module in this package with one `METHODS.register(name, Method subclass instance)`; the stage
(lora/stage.py), the training loop (lora/train.py), the checkpoint and the run-folder readers (runs/) only call
the methods below, so they never ask which method a run used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.lora.files import save_tensors


class Method:
    """One way to adapt the image tower (peft's tuner in spirit: a config's fields, then attach / save / merge).

    `takes` names the LoraSettings fields the method reads beyond the common ones (epochs, lr, objective, ...); a field
    it does not take, given a value other than its default, is a one-line error naming the method.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    takes: ClassVar[tuple[str, ...]] = ()
    change_file: ClassVar[str] = "method.safetensors"
    """The saved change, relative to the run folder: its sha256 is the run record's `adapter_sha`."""

    def check_settings(self, settings: Any) -> None:
        """Refuse settings this method cannot run (one line), before anything is loaded."""

    def describe(self, settings: Any) -> str:
        """How the stage names the method in its parameter-count line."""
        return self.title

    def attach(self, clip: nn.Module, settings: Any) -> nn.Module:
        """Adapt `clip` (an open_clip CLIP model, already frozen) and return the module holding the method's tensors
        (a peft wrapper, or `clip` itself changed in place). Afterwards exactly the method's tensors have
        requires_grad=True. Initialisation draws from torch's global RNG, which the caller has seeded."""
        raise NotImplementedError

    def encoder(self, adapted: nn.Module) -> nn.Module:
        """The open_clip model whose `encode_image` runs the adapted tower."""
        return adapted

    def trainable(self, adapted: nn.Module) -> dict[str, nn.Parameter]:
        """The method's trainable tensors by name (the head's are counted apart)."""
        return {name: p for name, p in adapted.named_parameters() if p.requires_grad}

    def check_attached(self, detector: nn.Module, image_size: int, settings: Any) -> None:
        """Refuse a method whose tensors one backward pass does not reach: they would silently never train."""
        tensors = self.trainable(detector.adapted)
        dead = unreached(detector, tensors, image_size)
        if dead:
            raise UserError(f"--method {self.name}: {len(dead)} of {len(tensors)} trainable tensors never get a "
                            f"gradient (e.g. {dead[0]}): the forward pass does not use them")

    def extra_loss(self, adapted: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor,
                   settings: Any) -> torch.Tensor | None:
        """Loss terms the method adds to the head's cross-entropy for one batch (None: none). `embeddings` are the
        batch's `encode_image` outputs, unnormalised, in the autocast dtype."""
        return None

    def state(self, adapted: nn.Module) -> dict[str, torch.Tensor]:
        """Everything `load` needs to rebuild the change on a fresh base model (trainable tensors and any fixed
        tensors the method computed at attach time, so a reload never depends on recomputing them)."""
        return {name: p.detach() for name, p in self.trainable(adapted).items()}

    def save(self, adapted: nn.Module, run: Path, settings: Any) -> Path:
        """Write the change into the run folder; returns the file whose sha256 the record keeps."""
        return save_tensors(self.state(adapted), run / self.change_file, {"method": self.name})

    def load(self, clip: nn.Module, run: Path, settings: Any) -> nn.Module:
        """The saved change on a freshly loaded, frozen base model: attach, then the saved tensors."""
        import safetensors.torch
        adapted = self.attach(clip, settings)
        self.load_state(adapted, safetensors.torch.load_file(str(run / self.change_file)))
        return adapted

    def load_state(self, adapted: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        """Copy saved tensors (named as `state` names them) into an attached model."""
        raise NotImplementedError

    def merge(self, adapted: nn.Module) -> nn.Module:
        """A plain open_clip model (no wrappers, no parametrizations) with the change folded into its weights,
        whose state_dict has open_clip's parameter names. May change `adapted` in place."""
        raise NotImplementedError


def unreached(model: nn.Module, tensors: Mapping[str, nn.Parameter], image_size: int) -> list[str]:
    """Names of `tensors` that one backward pass through `model` on random images leaves without a gradient, drawn
    without touching any RNG stream the run uses."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        images = torch.randn(2, 3, image_size, image_size, device=device)
        model.zero_grad(set_to_none=True)
        model(images).square().sum().backward()
    dead = [name for name, p in tensors.items() if p.grad is None]
    model.zero_grad(set_to_none=True)
    return dead


METHODS: Registry[Method] = Registry("fine-tuning method")
