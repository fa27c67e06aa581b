"""Model registry: open_clip models by name, weights from a tag, a local file, or a seeded random init.

The package's own configs (e.g. `tiny-vit`) are registered with open_clip the first time a model is
looked up or built (never at import), so tests and the demo use the same code path as ViT-B-32 with
real weights. Nothing here changes process-wide settings beyond the call that needs them: offline
mode for a weights download and torch's thread count are scoped to a `with` block.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import open_clip
import torch
from torchvision.transforms import Compose, Normalize, ToTensor

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_json
from clipforensics.core.settings import PRECISIONS, option

CONFIG_DIR = Path(__file__).parent / "configs"

RANDOM = "none"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
HUB_HOST = ("huggingface.co", 443)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BF16_MIN_GAIN = 1.05  # auto takes bf16 weights on a CPU only when calibration finds them this much faster
CALIBRATION_BATCH = 4


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
    """An open_clip model ready for inference, with what a cache must record about it.

    `pixels` is the PIL half of open_clip's eval transform (resize, crop, RGB): DataLoader workers run
    it and hand over uint8 images; `encode_images` does the float half (scale, normalise, cast) on the
    model's device, on the whole batch at once.
    """

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    identity: dict[str, Any]
    device: torch.device
    precision: str
    precision_reason: str = ""

    def __post_init__(self) -> None:
        self.pixels, mean, std = split_preprocess(self.preprocess)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    @property
    def image_size(self) -> int:
        return int(self.identity["image_size"])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> the float input open_clip's transform makes (ToTensor then Normalize, same ops)."""
        return images.to(torch.float32).div_(255).sub_(self._mean).div_(self._std)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings (not normalised), float32 on the CPU.

        `images` are uint8 pixels from `pixels` (normalised here) or already-normalised floats."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            images = self.normalize(images)
        return self.model.encode_image(images.to(DTYPES[self.precision])).float().cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Projected text embeddings (not normalised), float32 on the CPU."""
        return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu()


def split_preprocess(preprocess: Callable[[Any], torch.Tensor]) -> tuple[Compose, list[float], list[float]]:
    """open_clip's eval transform cut where PIL work ends: (the PIL steps, mean, std).

    Everything before ToTensor (resize, crop, RGB) stays as open_clip wrote it, so the uint8 pixels are
    exactly the ones its transform would have scaled and normalised."""
    steps = list(getattr(preprocess, "transforms", []))
    cut = next((i for i, t in enumerate(steps) if isinstance(t, ToTensor)), None)
    if cut is None or len(steps) != cut + 2 or not isinstance(steps[cut + 1], Normalize):
        raise ValueError(f"unexpected open_clip transform (want PIL steps, ToTensor, Normalize): {preprocess}")
    norm = steps[cut + 1]
    return Compose(steps[:cut]), [float(v) for v in norm.mean], [float(v) for v in norm.std]


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs at, and why (printed, and recorded in the cache)."""

    precision: str
    reason: str


def cpu_bf16_support() -> tuple[bool | None, str]:
    """(native bf16 arithmetic?, what the CPU reports). None: unknown here, so auto measures.

    x86 CPUs without AVX512_BF16 or AMX emulate bf16 matmuls (8x slower than fp32 on an AVX2 EPYC)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
        avx512_bf16 = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
        names = [n for n, ok in (("AMX", amx), ("AVX512_BF16", avx512_bf16)) if ok]
        return bool(names), f"{capability}{''.join(' + ' + n for n in names)}" if names else capability
    return None, f"{platform.machine()} {capability}"


def user_cache_dir() -> Path:
    """Where per-machine measurements are remembered (XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipforensics"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or platform.machine()


def calibration_key(model_name: str) -> str:
    """One remembered calibration per CPU, its features, torch version, thread count and model."""
    return (f"{cpu_name()} | {cpu_bf16_support()[1]} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | {model_name}")


def calibrate_cpu(visual: torch.nn.Module, image_size: int, batch: int = CALIBRATION_BATCH,
                  rounds: int = 2) -> dict[str, float]:
    """Images/s of the image tower with fp32 and bf16 weights on one small batch, interleaved, best round.

    Costs a few forwards once per machine and model (ViT-B-32: ~2 s on 2 cores); bf16 runs on a copy,
    so the fp32 weights are never rounded."""
    half = copy.deepcopy(visual).to(torch.bfloat16)
    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    towers = {"fp32": (visual, x), "bf16": (half, x.to(torch.bfloat16))}
    best = {name: 0.0 for name in towers}
    with torch.inference_mode():
        for name, (tower, inp) in towers.items():
            tower(inp)  # the first call at a shape builds oneDNN kernels
        for _ in range(rounds):
            for name, (tower, inp) in towers.items():
                start = time.perf_counter()
                tower(inp)
                best[name] = max(best[name], batch / (time.perf_counter() - start))
    return best


def _remembered(key: str) -> dict[str, Any] | None:
    try:
        return json.loads((user_cache_dir() / "precision.json").read_text()).get(key)
    except (OSError, ValueError):
        return None


def _remember(key: str, entry: dict[str, Any]) -> None:
    path = user_cache_dir() / "precision.json"
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        known = {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**known, key: entry})
    except OSError as exc:  # an unwritable cache only costs a calibration next time
        print(f"note: cannot remember the precision calibration in {path}: {exc.strerror}", file=sys.stderr)


def resolve_precision(precision: str, device: torch.device, model_name: str | None = None,
                      calibrate: Callable[[], dict[str, float]] | None = None) -> PrecisionChoice:
    """The one rule for the precision a model runs at, for every stage that runs one.

    The precision is the dtype of the weights and inputs (`cast_model`), on every device. Explicit choices
    are validated. `auto`: on CUDA, bf16 where the GPU has it (fp32's range, so no overflow on any
    checkpoint), else fp16; on a CPU, fp32 unless it has native bf16 (AMX / AVX512_BF16); there,
    `calibrate` (fp32 vs bf16 images/s) decides, once per machine and model, remembered in
    `user_cache_dir()`. Without a `calibrate`, a native-bf16 CPU gets bf16."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise UserError("fp16 is not supported on the CPU; use bf16 or fp32")
        return PrecisionChoice(precision, f"asked for (--precision {precision})")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", f"auto: bf16 weights, {torch.cuda.get_device_name(device)} supports them")
        return PrecisionChoice("fp16", f"auto: fp16 weights, {torch.cuda.get_device_name(device)} has no bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"auto: no faster rule known for {device.type}")
    native, what = cpu_bf16_support()
    if native is False:
        return PrecisionChoice("fp32", f"auto: CPU {what} has no native bf16 (bf16 weights would be emulated, "
                                       "several times slower)")
    if calibrate is None:
        return (PrecisionChoice("bf16", f"auto: CPU {what} has native bf16") if native else
                PrecisionChoice("fp32", f"auto: CPU {what}, bf16 support unknown"))
    key = calibration_key(model_name or "?")
    entry = _remembered(key)
    where = "remembered from"
    if not entry or not {"fp32", "bf16"} <= set(entry):
        print(f"precision auto: timing fp32 and bf16 once on this CPU ({what}) ...", file=sys.stderr)
        speeds = calibrate()
        entry = {**{k: round(v, 2) for k, v in speeds.items()}, "measured": time.strftime("%Y-%m-%d %H:%M")}
        _remember(key, entry)
        where = "measured now, remembered in"
    pick = "bf16" if entry["bf16"] >= BF16_MIN_GAIN * entry["fp32"] else "fp32"
    return PrecisionChoice(pick, f"auto: CPU {what}: bf16 {entry['bf16']:.1f} vs fp32 {entry['fp32']:.1f} img/s "
                                 f"on {model_name} ({where} {user_cache_dir() / 'precision.json'})")


@functools.cache
def _add_package_configs() -> None:
    """Register this package's configs with open_clip, once per process, on first use."""
    open_clip.add_model_config(CONFIG_DIR)


def list_models() -> list[str]:
    _add_package_configs()
    return open_clip.list_models()


def model_config(name: str) -> dict[str, Any] | None:
    """open_clip's config of model `name` (this package's configs included)."""
    _add_package_configs()
    return open_clip.get_model_config(name)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for the block, then put back."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA GPU(s) "
                        f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def cast_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """Weights in the precision's dtype on `device`. Casting beats autocast on a GPU (H100, ViT-B-32 and
    ViT-L-14: 1.5x the images/s at the same cosine to fp32) and is the only fast bf16 on a CPU."""
    return model.to(device=device, dtype=DTYPES[precision])


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


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Inside the block huggingface_hub uses its local cache only (a missing tag fails in ~0.1 s, not
    ~47 s of retries); the process's own setting is back afterwards."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


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
            raise UserError(f"checkpoint {pretrained} is a folder, not a checkpoint file" if path.is_dir()
                            else f"checkpoint file not found: {pretrained}")
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


def _create(settings: ModelSettings, pretrained: str | None, is_tag: bool, offline: bool) -> tuple[Any, Any]:
    """open_clip's model and image transform, seeded; a checkpoint or tag that cannot load is one line."""
    with torch.random.fork_rng(devices=[]), _hub_offline(offline):
        torch.manual_seed(settings.init_seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                settings.model, pretrained=pretrained, cache_dir=settings.weights_dir)
        except Exception as exc:  # a user's checkpoint file can fail in any library's own way
            if not is_tag:
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise UserError(f"cannot load checkpoint {pretrained} for {settings.model} (truncated, or weights of "
                                f"another model?): {type(exc).__name__}: {first}") from None
            if not isinstance(exc, (RuntimeError, OSError)):
                raise
            raise UserError(
                f"weights for {settings.model} / {settings.pretrained} are not in the local cache and cannot be "
                f"downloaded here: copy them into --weights-dir (open_clip's cache_dir) or pass a checkpoint file "
                f"with --pretrained PATH") from exc
    return model, preprocess


def load_model(settings: ModelSettings, device: str = "cpu", precision: str = "fp32") -> LoadedModel:
    """Build the model; a tag that cannot be had offline fails fast with how to supply the weights."""
    pretrained, identity = _weights_source(settings)
    torch_device = resolve_device(device)
    resolve_precision(precision, torch_device)  # a bad choice fails before the model is built
    is_tag = identity["weights_kind"] == "tag"
    offline = is_tag and (os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable())
    if pretrained is None:
        print(f"WARNING: RANDOM WEIGHTS for {settings.model} (--pretrained none, init seed {settings.init_seed}): "
              "embeddings carry no CLIP knowledge; results prove the machinery, not detection skill",
              file=sys.stderr)
    model, preprocess = _create(settings, pretrained, is_tag, offline)
    model.eval().requires_grad_(False)
    _text_sequence_first(model)
    pp = model.visual.preprocess_cfg
    image_size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    choice = resolve_precision(precision, torch_device, settings.model,
                               lambda: calibrate_cpu(model.visual, int(image_size)))
    print(f"precision {choice.precision}: {choice.reason}", file=sys.stderr)
    resolved = choice.precision
    cast_model(model, torch_device, resolved)
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
    with _hub_offline(offline):  # some tokenizers come from the hub too
        tokenizer = open_clip.get_tokenizer(settings.model, cache_dir=settings.weights_dir)
    return LoadedModel(model, preprocess, tokenizer, identity, torch_device, resolved, choice.reason)
