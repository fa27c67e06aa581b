"""The fine-tuning stage's model: the two trainable heads (one per objective), and the Detector (a method's adapted
image tower, then a head); the settings are in lora/settings.py. What adapts the tower is a fine-tuning method
(`--method`, clipforensics/lora/methods/); this module asks the method for its tensors, never which method it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.extract.models import LoadedModel
from clipforensics.extract.prompts import PROMPT_SETS, class_means
from clipforensics.core.settings import flag_of
from clipforensics.lora.methods import METHODS, Method
from clipforensics.lora.selection import SELECTIONS
from clipforensics.lora.settings import LoraSettings

MAX_LOGIT_SCALE = float(np.log(100.0))  # CLIP's own clamp on its temperature


class PromptHead(nn.Module):
    """Cosine to the class-mean prompt embeddings, rows [real, fake], times a learnable temperature."""

    def __init__(self, classes: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.register_buffer("classes", classes.float())
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return scale * F.normalize(embeddings, dim=-1) @ self.classes.T


class LinearHead(nn.Module):
    """Logits [real, fake] from a linear layer on the L2-normalised embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 2)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(embeddings, dim=-1))


def prompt_classes(loaded: LoadedModel, name: str) -> torch.Tensor:
    """Class means of a prompt set from the frozen text tower, ordered by the prompts' labels, never by position."""
    prompt_set = PROMPT_SETS.get(name)
    embeddings = loaded.encode_texts(list(prompt_set.texts)).numpy()
    return torch.from_numpy(class_means(embeddings, np.asarray(prompt_set.labels))).float()


LORA_HEADS: Registry[Callable[[LoadedModel, LoraSettings], nn.Module]] = Registry("objective")
"""The trainable heads on the LoRA'd image tower, one per training objective (`--objective`), each built from the
loaded model and the settings."""


@LORA_HEADS.register("prompt")
def _prompt_head(loaded: LoadedModel, settings: LoraSettings) -> nn.Module:
    return PromptHead(prompt_classes(loaded, settings.prompt_set), float(loaded.model.logit_scale))


@LORA_HEADS.register("linear")
def _linear_head(loaded: LoadedModel, settings: LoraSettings) -> nn.Module:
    return LinearHead(int(loaded.identity["embed_dim"]))


SAVED_HEADS: Registry[Callable[[Mapping[str, torch.Tensor]], nn.Module]] = Registry("saved head")
"""Each LoRA head rebuilt from its saved tensors alone (head.safetensors): scoring embeddings that are already
in a cache needs no model."""
SAVED_HEADS.register("prompt", lambda state: PromptHead(state["classes"], float(state["logit_scale"])))
SAVED_HEADS.register("linear", lambda state: LinearHead(int(state["linear.weight"].shape[1])))


@torch.no_grad()
def fake_probability(head: nn.Module, embeddings: np.ndarray) -> np.ndarray:
    """Softmax over the head's [real, fake] logits, as the LoRA stage scores its frames, on the CPU in fp32."""
    logits = head(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
    return torch.softmax(logits.float(), dim=1)[:, 1].numpy().astype(np.float64)


class Detector(nn.Module):
    """CLIP's image tower adapted by a fine-tuning method, then a head: logits [real, fake] per image.

    In training mode the forward keeps its batch's embeddings, so the method's extra loss (`extra_loss`) needs no
    second forward and the training step stays one call of the module (as DistributedDataParallel requires)."""

    def __init__(self, method: Method, adapted: nn.Module, head: nn.Module, settings: "LoraSettings",
                 tower_size: int) -> None:
        super().__init__()
        self.method = method
        self.adapted = adapted
        self.head = head
        self.settings = settings
        self.tower_size = tower_size  # parameters of the image tower before the method changed it
        self.embeddings: torch.Tensor | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.encoder(self.adapted).encode_image(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.embed(images)
        self.embeddings = embeddings if self.training else None
        return self.head(embeddings.float())

    def extra_loss(self, labels: torch.Tensor) -> torch.Tensor | float:
        """The method's loss terms on the last training forward's embeddings (0.0 where it adds none)."""
        if self.embeddings is None:
            return 0.0
        extra = self.method.extra_loss(self.adapted, self.embeddings, labels, self.settings)
        return 0.0 if extra is None else extra

    def trainable(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def method_tensors(self) -> dict[str, nn.Parameter]:
        """The method's trainable tensors, named as in `trainable` (the head's left out)."""
        return {f"adapted.{name}": p for name, p in self.method.trainable(self.adapted).items()}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copies of the trainable tensors (method and head) on the CPU: all a checkpoint needs of the model."""
        return {name: p.detach().to("cpu", copy=True) for name, p in self.trainable().items()}

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        params = self.trainable()
        if set(state) != set(params):
            raise UserError("checkpoint tensors do not match this model's method and head tensors (other method, "
                            "targets or rank?)")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])


METHOD_FIELDS = tuple(sorted({name for _, method in METHODS.items() for name in method.takes}))
"""Settings that belong to some methods only; the others are common to every method."""


def check_method_options(settings: LoraSettings) -> Method:
    """The chosen method; an option of another method given a non-default value is a one-line error."""
    method = METHODS.get(settings.method)
    defaults = {f.name: f.default for f in dataclasses.fields(LoraSettings)}
    foreign = [name for name in METHOD_FIELDS if name not in method.takes and getattr(settings, name) != defaults[name]]
    if foreign:
        flags = " and ".join(flag_of(LoraSettings, name) for name in foreign)
        raise UserError(f"{flags} {'is not an option' if len(foreign) == 1 else 'are not options'} of "
                        f"--method {method.name}")
    method.check_settings(settings)
    return method


def check_settings(settings: LoraSettings) -> None:
    """Every name and number of the stage, checked before anything is loaded."""
    check_method_options(settings)
    LORA_HEADS.get(settings.objective)
    SELECTIONS.get(settings.select)
    PROMPT_SETS.get(settings.prompt_set)
    s = settings
    rules = (
        (s.epochs >= 1 and s.batch_size >= 1, "--epochs and --batch-size must be at least 1"),
        (s.lr > 0 and s.weight_decay >= 0 and 0 <= s.warmup < 1 and s.clip_grad >= 0,
         "--lr must be positive; --weight-decay and --clip-grad non-negative; --warmup a share of the steps in [0, 1)"),
        (s.max_train_images is None or s.max_train_images >= 2, "--max-train-images must be at least 2"),
        (0 < s.crop_scale <= 1, f"--crop-scale {s.crop_scale} must be in (0, 1]"),
        (s.jpeg_quality is None or 1 <= s.jpeg_quality <= 95, f"--jpeg-quality {s.jpeg_quality} must be in 1..95"),
        (s.workers >= 0, "--workers must be non-negative"),
    )
    bad = [message for ok, message in rules if not ok]
    if bad:
        raise UserError("; ".join(bad))


@contextlib.contextmanager
def seeded_torch_rng(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global RNG (the CPU's, and `device`'s if CUDA) seeded for one block and restored after it.

    For what cannot take a generator (weight init inside peft and nn.Linear, LoRA dropout): their draws become a
    function of `seed`, and the caller's random stream is left as it was.
    """
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for d in cuda:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


def build_detector(loaded: LoadedModel, settings: LoraSettings) -> Detector:
    """The method + head on the loaded model, initialised from `settings.train_seed`, its tensors proven to receive
    gradients."""
    method = METHODS.get(settings.method)
    tower_size = sum(p.numel() for p in loaded.model.visual.parameters())
    loaded.model.requires_grad_(False)
    with seeded_torch_rng(settings.train_seed, torch.device("cpu")):  # peft and nn.Linear initialise on the CPU
        head = LORA_HEADS.get(settings.objective)(loaded, settings)
        adapted = method.attach(loaded.model, settings)
    detector = Detector(method, adapted, head, settings, tower_size).to(loaded.device)
    method.check_attached(detector, loaded.image_size, settings)
    return detector


def parameter_counts(detector: Detector) -> dict[str, Any]:
    """Trainable parameters of the method (under its name) and of the head, the image tower's parameters before the
    method, the method's share of them in %, and all parameters of the model (frozen text tower included)."""
    method = sum(p.numel() for p in detector.method_tensors().values())
    return {detector.method.name: method,
            "head": sum(p.numel() for p in detector.head.parameters() if p.requires_grad),
            "tower": detector.tower_size,
            "method_share_of_tower": 100.0 * method / detector.tower_size,
            "total": sum(p.numel() for p in detector.parameters())}


def describe_counts(counts: Mapping[str, Any], detector: Detector) -> str:
    method = counts[detector.method.name]
    return (f"{detector.method.describe(detector.settings)}: {method:,} trainable parameters "
            f"({counts['method_share_of_tower']:.3f} % of the image tower's {counts['tower']:,}); "
            f"head: {counts['head']:,}")
