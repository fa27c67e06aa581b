"""What every encoder shares (clipforensics/extract/encoders/ builds the models, extract/settings.py holds their
settings): the loaded model with its pixels-then-normalise split, the precision rule, devices and weight
fingerprints. Nothing here changes process-wide settings beyond the call that needs them: torch's thread count is
scoped to a `with` block.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torchvision.transforms import Compose, Normalize, ToTensor

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_json
from clipforensics.core.settings import PRECISIONS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BF16_MIN_GAIN = 1.05  # auto takes bf16 weights on a CPU only when calibration finds them this much faster
CALIBRATION_BATCH = 4


@dataclass
class LoadedModel:
    """An open_clip model ready for inference, with what a cache must record about it.

    `pixels` is the PIL half of open_clip's eval transform (resize, crop, RGB): DataLoader workers run
    it and hand over uint8 images; `encode_images` does the float half (scale, normalise, cast) on the
    model's device, on the whole batch at once.
    """

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor] | None  # None: an image-only encoder
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

    @property
    def has_text(self) -> bool:
        """Whether the encoder has a text tower (prompt sets, zero-shot and prompt heads need one)."""
        return self.tokenizer is not None

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Projected text embeddings (not normalised), float32 on the CPU."""
        if self.tokenizer is None:
            raise UserError(f"{self.identity['model']} has no text tower (an image-only encoder): prompts cannot be "
                            "embedded; use heads and objectives without prompts (e.g. --objective linear)")
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


def _memo() -> dict[str, Any]:
    """The remembered calibrations; a damaged memo (unreadable, not a JSON object) is as good as none: re-measured."""
    try:
        known = json.loads((user_cache_dir() / "precision.json").read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remembered(key: str) -> dict[str, Any] | None:
    entry = _memo().get(key)
    return entry if isinstance(entry, dict) else None


def _remember(key: str, entry: dict[str, Any]) -> None:
    path = user_cache_dir() / "precision.json"
    known = _memo()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**known, key: entry})
    except OSError as exc:  # an unwritable cache only costs a calibration next time
        print(f"note: cannot remember the precision calibration in {path}: {exc.strerror}", file=sys.stderr)


_CHOSEN_BY: contextvars.ContextVar[tuple[str, bool] | None] = contextvars.ContextVar("precision_chosen_by",
                                                                                   default=None)


@contextlib.contextmanager
def precision_chosen_by(reason: str, say: bool = True) -> Iterator[None]:
    """Models loaded in the block at an explicit precision that the code, not the user, chose: the line printed
    (only if `say`) and the reason recorded give `reason` instead of "asked for (--precision ...)"."""
    token = _CHOSEN_BY.set((reason, say))
    try:
        yield
    finally:
        _CHOSEN_BY.reset(token)


def choose_precision(precision: str, device: torch.device, model_name: str, visual: torch.nn.Module,
                     image_size: int) -> PrecisionChoice:
    """`resolve_precision` for a built image tower (timed only where a CPU's bf16 must be measured), printed
    once, saying who chose it."""
    choice = resolve_precision(precision, device, model_name, lambda: calibrate_cpu(visual, image_size))
    chosen_by = _CHOSEN_BY.get()
    if chosen_by and precision != "auto":
        choice = PrecisionChoice(choice.precision, chosen_by[0])
    if not chosen_by or chosen_by[1] or precision == "auto":
        print(f"precision {choice.precision}: {choice.reason}", file=sys.stderr)
    return choice


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
