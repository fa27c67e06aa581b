"""LoRA on CLIP's image tower through peft: named target sets, two trainable heads, and the checks they need.

Three peft 0.21 behaviours on open_clip's `nn.MultiheadAttention` shape this module (tests/test_lora.py shows the
first two):
- MHA never calls `out_proj.forward`, so LoRA on `attn.out_proj` alone gets no gradient and no warning. A target
  set is therefore tried with one backward pass before training, and LoRA tensors the pass never reaches are an
  error (`check_gradients`). Targeting the `attn` module itself adapts the fused in-projection and out-projection.
- peft adapts MHA by adding its delta to the frozen weights before each forward and subtracting it after, which
  leaves them off by rounding (~1e-8 per forward). `keep_base_exact` puts the untouched tensors back after every
  forward, so the base stays bit-identical and a resumed run equals an uninterrupted one.
- peft 0.21 adds the out_proj delta twice on that path (huggingface/peft PR #3774). Training, merging and reloading
  all take the same path, so the model is self-consistent, but a peft with the fix would load the adapter
  differently: the merged checkpoint is the artefact to keep. The same merging means LoRA dropout has no effect
  on attention targets; it acts on MLP targets only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import peft
import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import MultiheadAttention as LoraMultiheadAttention
from torch import nn

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.extract.models import PRECISIONS, LoadedModel
from clipforensics.extract.prompts import PROMPT_SETS, class_means
from clipforensics.core.settings import DeviceSettings, option

BLOCK = r"visual\.transformer\.resblocks\.\d+"
ATTENTION = BLOCK + r"\.attn"
MLP = BLOCK + r"\.mlp\.(?:c_fc|c_proj)"
TARGET_SETS: Registry[tuple[str, ...]] = Registry("target set")
"""Named LoRA targets: regexes over module names (fully matched), image tower only."""
TARGET_SETS.register("attn", (ATTENTION,))
TARGET_SETS.register("attn+mlp", (ATTENTION, MLP))
TARGET_SETS.register("mlp", (MLP,))

MAX_LOGIT_SCALE = float(np.log(100.0))  # CLIP's own clamp on its temperature


@dataclass
class LoraSettings(DeviceSettings):
    """The LoRA stage: fine-tune the image tower of a base cache's model, select on val, re-extract."""

    base_cache: str = option(None, "cache of the base model: model, weights, image size, prompts and data root "
                                    "are taken from it", required=True, metavar="FILE")
    out: str = option(None, "run folder: checkpoint, adapter, head, log, curve, scores", required=True,
                      metavar="DIR", execution_only=True)
    data_root: str | None = option(None, "data root (default: the one recorded in the base cache)", metavar="DIR",
                                   execution_only=True)
    rank: int = option(32, "LoRA rank r")
    alpha: float = option(64.0, "LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = option(0.05, "LoRA dropout (acts on MLP targets; peft merges attention deltas, no dropout)")
    targets: str = option("attn", f"LoRA target set: {', '.join(TARGET_SETS)}")
    head: str = option("prompt", "objective: prompt (cosine to the prompt set's class means, learnable "
                                 "temperature) or linear (a linear layer on the normalised embedding)")
    prompt_set: str = option("v2", "prompt set of the prompt head (classes come from its labels)")
    epochs: int = option(5, "training epochs")
    batch_size: int = option(32, "images per step (and per validation forward)")
    lr: float = option(1e-4, "AdamW peak learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and the temperature)")
    warmup: float = option(0.1, "linear warm-up: a fraction of all steps (< 1) or a number of steps (>= 1), "
                                "then cosine decay to 0")
    clip_grad: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    max_train_images: int | None = option(None, "train on at most N images, spread evenly (short runs)",
                                          metavar="N")
    flip: bool = option(True, "random horizontal flips")
    crop_scale: float = option(0.85, "random-resized crop keeps at least this share of the area (1: no crop)")
    jpeg_quality: int | None = option(None, "re-encode half of the training images as JPEG, quality drawn from "
                                            "[Q, 95]", metavar="Q")
    amp: str = option("auto", "autocast precision of training on CUDA: auto (extraction's rule: bf16 where the GPU "
                              "has it, else fp16), bf16, fp16, fp32; the CPU trains in fp32", choices=PRECISIONS)
    seed: int = option(0, "seed of LoRA and head init, data order, augmentation and dropout")
    cache_out: str | None = option(None, "folder of the re-extracted cache (default: the base cache's folder)",
                                   metavar="DIR", execution_only=True)
    merge_out: str | None = option(None, "also save the merged open_clip checkpoint here (.safetensors), for "
                                         "extract_features.py --pretrained PATH", metavar="FILE", execution_only=True)
    extract: bool = option(True, "re-extract the data root with the merged model into a new cache",
                           execution_only=True)
    overwrite: bool = option(False, "start again: remove a run in --out made with other settings (or write into "
                                    "a non-empty --out)", execution_only=True)


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


LORA_HEADS: Registry[Callable[[LoadedModel, LoraSettings], nn.Module]] = Registry("head")
"""The trainable heads on the LoRA'd image tower (`--head`), each built from the loaded model and the settings."""


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
    """CLIP's image tower with LoRA, then a head: logits [real, fake] per image."""

    def __init__(self, adapted: peft.PeftModel, head: nn.Module) -> None:
        super().__init__()
        self.adapted = adapted
        self.head = head

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.adapted.get_base_model().encode_image(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images).float())

    def trainable(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def lora_tensors(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.trainable().items() if ".lora_" in name}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copies of the trainable tensors (LoRA and head) on the CPU: all a checkpoint needs of the model."""
        return {name: p.detach().to("cpu", copy=True) for name, p in self.trainable().items()}

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        params = self.trainable()
        if set(state) != set(params):
            raise UserError("checkpoint tensors do not match this model's LoRA and head (other targets or rank?)")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])


def check_settings(settings: LoraSettings) -> None:
    """Every name and number of the stage, checked before anything is loaded."""
    TARGET_SETS.get(settings.targets)
    LORA_HEADS.get(settings.head)
    PROMPT_SETS.get(settings.prompt_set)
    s = settings
    rules = (
        (s.rank >= 1 and s.alpha > 0, f"--rank {s.rank} and --alpha {s.alpha} must be positive"),
        (0 <= s.dropout < 1, f"--dropout {s.dropout} must be in [0, 1)"),
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


def target_regex(name: str) -> str:
    return "|".join(f"(?:{pattern})" for pattern in TARGET_SETS.get(name))


def _pin(module: nn.Module, args: Any, kwargs: Any) -> None:
    base = module.get_base_layer()
    module._pinned_base = (base.in_proj_weight, base.out_proj.get_base_layer().weight)


def _restore(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
    base = module.get_base_layer()
    in_proj, out_proj = module.__dict__.pop("_pinned_base")
    out_layer = base.out_proj.get_base_layer()
    del base.in_proj_weight
    base.register_parameter("in_proj_weight", in_proj)
    del out_layer.weight
    out_layer.register_parameter("weight", out_proj)


def keep_base_exact(model: nn.Module) -> None:
    """After each forward of a LoRA'd MHA, put back the frozen tensors peft replaced by (W + d) - d."""
    for module in model.modules():
        if isinstance(module, LoraMultiheadAttention):
            module.register_forward_pre_hook(_pin, with_kwargs=True)
            module.register_forward_hook(_restore, with_kwargs=True, always_call=True)


def add_lora(model: nn.Module, settings: LoraSettings) -> peft.PeftModel:
    """Wrap the open_clip model with LoRA on the named target set (weights init from the global torch RNG)."""
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=target_regex(settings.targets))
    try:
        adapted = peft.get_peft_model(model, config)
    except ValueError as exc:
        raise UserError(f"target set {settings.targets!r} matches no module: {str(exc).splitlines()[0]}") from None
    keep_base_exact(adapted)
    return adapted


def dead_lora_tensors(detector: Detector, image_size: int) -> list[str]:
    """LoRA tensors that one backward pass does not reach (grad None), without touching any RNG stream."""
    device = next(detector.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        images = torch.randn(2, 3, image_size, image_size, device=device)
        detector.zero_grad(set_to_none=True)
        detector(images).square().sum().backward()
    dead = [name for name, p in detector.lora_tensors().items() if p.grad is None]
    detector.zero_grad(set_to_none=True)
    return dead


def check_gradients(detector: Detector, image_size: int, targets: str) -> None:
    dead = dead_lora_tensors(detector, image_size)
    if dead:
        raise UserError(f"target set {targets!r}: {len(dead)} of {len(detector.lora_tensors())} LoRA tensors never "
                        f"get a gradient (e.g. {dead[0]}): the forward pass does not call them "
                        "(nn.MultiheadAttention never calls out_proj.forward; target the attn module itself)")


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
    """LoRA + head on the loaded model, initialised from `settings.seed`, targets proven to receive gradients."""
    with seeded_torch_rng(settings.seed, torch.device("cpu")):  # peft and nn.Linear initialise on the CPU
        head = LORA_HEADS.get(settings.head)(loaded, settings)
        adapted = add_lora(loaded.model, settings)
    detector = Detector(adapted, head).to(loaded.device)
    check_gradients(detector, loaded.image_size, settings.targets)
    return detector


def parameter_counts(detector: Detector) -> dict[str, int]:
    """Trainable LoRA and head parameters, and all parameters of the model (frozen text tower included)."""
    return {"lora": sum(p.numel() for p in detector.lora_tensors().values()),
            "head": sum(p.numel() for p in detector.head.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in detector.parameters())}


def describe_counts(counts: Mapping[str, int], targets: str) -> str:
    share = 100.0 * counts["lora"] / counts["total"]
    return (f"LoRA on {targets}: {counts['lora']:,} trainable parameters ({share:.2f} % of {counts['total']:,}); "
            f"head: {counts['head']:,}")
