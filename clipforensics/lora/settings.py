"""The fine-tuning stage's settings, and the names its options take (methods, target sets, selections).

Light on purpose (no torch, peft, open_clip): finetune_lora.py parses its options with these before it imports the
stage. The methods are named by their modules in lora/methods/, listed without importing them (each registers under
its module's name: lora/methods/__init__.py checks it), so `--help` lists the one registration without loading it.
"""

from __future__ import annotations

import importlib.util
import pkgutil
from dataclasses import dataclass
from typing import Any

from clipforensics.core.settings import PRECISIONS, DeviceSettings, identity_keys, option, without_execution_only
from clipforensics.lora.selection import SELECTIONS
from clipforensics.lora.targets import TARGET_SETS

METHODS_PACKAGE = "clipforensics.lora.methods"
NOT_A_METHOD = "base"  # lora/methods/base.py: what a method is


def method_names() -> tuple[str, ...]:
    """The fine-tuning methods' names: the modules of lora/methods/ but base, in name order, none imported."""
    spec = importlib.util.find_spec(METHODS_PACKAGE)
    found = pkgutil.iter_modules(spec.submodule_search_locations if spec else [])
    return tuple(sorted(m.name for m in found if m.name != NOT_A_METHOD))


@dataclass
class LoraSettings(DeviceSettings):
    """The fine-tuning stage: adapt the image tower of a base cache's model by a method, select on val, re-extract.
    `rank`, `alpha`, `dropout`, `targets` and the loss weights are options of some methods only (each method's
    `takes`)."""

    base_cache: str = option(None, "cache of the base model: model, weights, image size, prompts and data root "
                                    "are taken from it", required=True, metavar="FILE")
    out: str = option(None, "run folder: checkpoint, adapter, head, log, curve, scores", required=True,
                      metavar="DIR", execution_only=True)
    data_root: str | None = option(None, "data root (default: the one recorded in the base cache)", metavar="DIR",
                                   execution_only=True)
    method: str = option("lora", f"fine-tuning method: {', '.join(method_names())}", identity=True)
    rank: int = option(32, "LoRA / DoRA rank r; svd: rank of the trained residual")
    alpha: float = option(64.0, "LoRA / DoRA alpha (the update is scaled by alpha / r)")
    dropout: float = option(0.05, "LoRA / DoRA dropout (acts on MLP targets; peft merges attention deltas, no "
                                   "dropout)")
    targets: str = option("attn", f"LoRA / DoRA / svd target set: {', '.join(TARGET_SETS)} (DoRA: mlp only)")
    uniformity_weight: float = option(0.0, "layernorm: weight of GenD's uniformity loss on the L2-normalised "
                                           "features (GenD: 0.5; 0: off)", metavar="W")
    alignment_weight: float = option(0.0, "layernorm: weight of GenD's same-label alignment loss on the "
                                          "L2-normalised features (GenD: 0.1; 0: off)", metavar="W")
    svd_orth_weight: float = option(1.0, "svd: weight of Effort's orthogonality loss (U and V of each decomposed "
                                         "matrix kept orthonormal), averaged over the matrices; 0: off",
                                    metavar="W")
    svd_sv_weight: float = option(1.0, "svd: weight of Effort's keep-singular-value loss (| ||W||_F^2 - "
                                       "||W0||_F^2 |), averaged over the matrices; 0: off (Effort's released "
                                       "training uses neither: --svd-orth-weight 0 --svd-sv-weight 0)", metavar="W")
    objective: str = option("prompt", "training objective: prompt (cosine to the prompt set's class means, "
                                      "learnable temperature) or linear (a linear layer on the normalised embedding)",
                            identity="head", formerly="--head")
    prompt_set: str = option("v2", "prompt set of the prompt objective (classes come from its labels)")
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
    train_precision: str = option("auto", "autocast precision of training on CUDA: auto (extraction's rule: bf16 "
                                          "where the GPU has it, else fp16), bf16, fp16, fp32; the CPU trains in "
                                          "fp32 (the re-extraction runs at the base cache's --precision)",
                                  choices=PRECISIONS, identity="amp", formerly="--amp")
    train_seed: int = option(0, "seed of the training: LoRA and head init, data order, augmentation and dropout",
                             identity="seed", formerly="--seed")
    cache_out: str | None = option(None, "folder of the re-extracted cache (default: the base cache's folder)",
                                   metavar="DIR", execution_only=True)
    merge_out: str | None = option(None, "also save the merged open_clip checkpoint here (.safetensors), for "
                                         "extract_features.py --pretrained PATH", metavar="FILE", execution_only=True)
    extract: bool = option(True, "re-extract the data root with the merged model into a new cache",
                           execution_only=True)
    overwrite: bool = option(False, "start again: remove a run in --out made with other settings (or write into "
                                    "a non-empty --out)", execution_only=True)
    select: str = option("val", "which epoch is the result: val (best val video AUC, then frame AUC) or last",
                         choices=tuple(SELECTIONS), identity=True)
    pair_batches: bool = option(False, "put a real frame and a fake made from the same video in the same batch "
                                       "(batch-level pairing; GenD's code pairs videos in the training set, not "
                                       "batches)", identity=True)


def checkpoint_identity(settings: LoraSettings) -> dict[str, Any]:
    """Every setting that changes what training computes (all but the execution-only ones), each under the key it is
    recorded with: a field renamed since (`identity="amp"`) keeps its old key, so a checkpoint written before the
    rename still resumes."""
    keys = identity_keys(settings)
    return {keys.get(name, name): value for name, value in without_execution_only(settings).items()}
