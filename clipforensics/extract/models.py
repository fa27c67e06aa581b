"""Model registry: open_clip models by name, weights from a tag, a local file, or a seeded random init.

The package's own configs (e.g. `tiny-vit`) are registered with open_clip at import, so tests and
the demo use the same code path as ViT-B-32 with real weights.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch

from clipforensics.core.errors import UserError
from clipforensics.core.settings import option

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)

RANDOM = "none"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
HUB_HOST = ("huggingface.co", 443)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class ModelSettings:
    model: str = option("ViT-B-32", "open_clip model name (e.g. ViT-B-32, ViT-L-14, tiny-vit)")
    pretrained: str = option(
        "openai", "open_clip pretrained tag (openai, laion2b_s34b_b79k, ...), a local checkpoint file "
        "(.pt/.pth/.bin/.safetensors), or 'none' for random weights")
    init_seed: int = option(0, "seed of the random weights when --pretrained none")
    weights_dir: str | None = option(None, "folder where open_clip keeps downloaded weights (its cache_dir)",
                                     metavar="DIR")


@dataclass
class LoadedModel:
    """An open_clip model ready for inference, with what a cache must record about it."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    identity: dict[str, Any]
    device: torch.device
    precision: str

    @property
    def image_size(self) -> int:
        return int(self.identity["image_size"])

    def _autocast(self):
        if self.device.type == "cuda" and self.precision != "fp32":
            return torch.autocast("cuda", dtype=DTYPES[self.precision])
        return torch.autocast(self.device.type, enabled=False)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings (not normalised), float32 on the CPU."""
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cpu":
            images = images.to(DTYPES[self.precision])
        with self._autocast():
            return self.model.encode_image(images).float().cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Projected text embeddings (not normalised), float32 on the CPU."""
        tokens = self.tokenizer(texts).to(self.device)
        with self._autocast():
            return self.model.encode_text(tokens).float().cpu()


def list_models() -> list[str]:
    return open_clip.list_models()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: fp16 autocast on CUDA; bf16 weights on CPU (2.7x faster than fp32, cosine >= 0.999)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    if precision == "fp16" and device.type == "cpu":
        raise UserError("fp16 is not supported on the CPU; use bf16 or fp32")
    return precision


def file_fingerprint(path: Path) -> str:
    """sha256 of a checkpoint's size, first and last MiB: cheap, and changes when the file does."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def _force_offline() -> None:
    """Make huggingface_hub use its local cache only, so a missing tag fails in ~0.1 s, not ~47 s."""
    import huggingface_hub.constants as hub_constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True


def _weights_source(settings: ModelSettings) -> tuple[str | None, dict[str, Any]]:
    """What to pass to open_clip as `pretrained`, and how the cache will record it."""
    name, pretrained = settings.model, settings.pretrained
    if name not in list_models():
        raise UserError(f"unknown model {name!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14 "
                        f"(and this package's tiny-vit)")
    if pretrained.lower() == RANDOM:
        return None, {"pretrained": RANDOM, "weights_kind": "random",
                      "weights_fingerprint": f"init_seed={settings.init_seed}", "random_weights": True}
    path = Path(pretrained).expanduser()
    if path.suffix in CHECKPOINT_SUFFIXES or path.exists():
        if not path.is_file():
            raise UserError(f"checkpoint file not found: {pretrained}")
        return str(path), {"pretrained": str(path.resolve()), "weights_kind": "file",
                           "weights_fingerprint": file_fingerprint(path), "random_weights": False}
    if not open_clip.get_pretrained_cfg(name, pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none (use a checkpoint file)"
        raise UserError(f"{pretrained!r} is not a pretrained tag of {name} (known: {tags}) nor a checkpoint file")
    return pretrained, {"pretrained": pretrained, "weights_kind": "tag",
                        "weights_fingerprint": f"tag={pretrained}", "random_weights": False}


def _text_sequence_first(model: torch.nn.Module) -> None:
    """Run the text tower's blocks sequence-first: with batch-first inputs PyTorch's attention copies
    its in-projection weight once per token (77x per layer), which made prompt encoding cost as much
    as hundreds of image forwards on the CPU. Outputs are unchanged (tests/test_models.py)."""
    transformer = getattr(model, "transformer", None)
    blocks = getattr(transformer, "resblocks", [])
    if not blocks or not all(isinstance(getattr(b, "attn", None), torch.nn.MultiheadAttention) for b in blocks):
        return
    transformer.batch_first = False
    for block in blocks:
        block.attn.batch_first = False


def load_model(settings: ModelSettings, device: str = "cpu", precision: str = "fp32") -> LoadedModel:
    """Build the model; a tag that cannot be had offline fails fast with how to supply the weights."""
    pretrained, identity = _weights_source(settings)
    torch_device = resolve_device(device)
    resolved = resolve_precision(precision, torch_device)
    is_tag = identity["weights_kind"] == "tag"
    if is_tag and (os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()):
        _force_offline()
    if pretrained is None:
        print(f"WARNING: RANDOM WEIGHTS for {settings.model} (--pretrained none, init seed {settings.init_seed}): "
              "embeddings carry no CLIP knowledge; results prove the machinery, not detection skill",
              file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.init_seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                settings.model, pretrained=pretrained, cache_dir=settings.weights_dir)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            if not is_tag:
                raise UserError(f"cannot load checkpoint {pretrained}: {str(exc).splitlines()[0]}") from exc
            raise UserError(
                f"weights for {settings.model} / {settings.pretrained} are not in the local cache and cannot be "
                f"downloaded here: copy them into --weights-dir (open_clip's cache_dir) or pass a checkpoint file "
                f"with --pretrained PATH") from exc
    model.eval().requires_grad_(False)
    _text_sequence_first(model)
    if torch_device.type == "cpu":
        model.to(DTYPES[resolved])
    model.to(torch_device)
    pp = model.visual.preprocess_cfg
    image_size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    identity.update({
        "model": settings.model,
        "init_seed": settings.init_seed,
        "image_size": int(image_size),
        "mean": [float(v) for v in pp["mean"]],
        "std": [float(v) for v in pp["std"]],
        "interpolation": pp.get("interpolation", "bicubic"),
        "resize_mode": pp.get("resize_mode", "shortest"),
        "precision": resolved,
        "embed_dim": int(model.text_projection.shape[1]) if hasattr(model, "text_projection")
        and model.text_projection is not None else -1,
    })
    tokenizer = open_clip.get_tokenizer(settings.model, cache_dir=settings.weights_dir)
    return LoadedModel(model, preprocess, tokenizer, identity, torch_device, resolved)
