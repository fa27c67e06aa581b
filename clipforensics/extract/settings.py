"""The extraction stage's settings: which model and weights, and how the cache is written.

Light on purpose (no torch, open_clip, h5py): extract_features.py parses its options with these before it imports
the stage, so `--help` and a mistyped option answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipforensics.core.settings import RuntimeSettings, option
from clipforensics.extract.prompts import PROMPT_SETS


@dataclass
class ModelSettings:
    model: str = option("ViT-B-32", "open_clip model name (e.g. ViT-B-32, ViT-L-14, PE-Core-B-16, tiny-vit) or a timm "
                                    "image tower as timm:NAME (e.g. timm:vit_base_patch14_dinov2; no text tower)")
    pretrained: str = option(
        "openai", "pretrained tag of the model's library (open_clip: openai, laion2b_s34b_b79k, ...; timm: lvd142m, "
        "...), a local checkpoint file (.pt/.pth/.bin/.safetensors), or 'none' for random weights")
    init_seed: int = option(0, "seed of the random weights when --pretrained none")
    weights_dir: str | None = option(None, "folder where open_clip / timm keep downloaded weights (cache_dir)",
                                     metavar="DIR")


@dataclass
class ExtractSettings(RuntimeSettings):
    out: str = option(None, "cache file to write, e.g. cache/NAME.h5", required=True, metavar="FILE")
    batch_size: int = option(64, "images per forward pass")
    prompt_sets: tuple[str, ...] = option(tuple(PROMPT_SETS), "prompt sets to embed (comma list)", identity=True)
    max_images: int | None = option(None, "use at most N images, spread evenly over the manifest (trial runs)",
                                    metavar="N", formerly="--limit")
    chunk_size: int = option(512, "rows per resumable chunk: a crash redoes at most two (the one being saved, "
                                  "the one being filled)", identity=True)
    overwrite: bool = option(False, "replace an existing cache (or unfinished parts) made with other settings")
    shard: str | None = option(None, "do only shard K of N (K/N, e.g. for SLURM arrays); then run "
                                     "`extract_features.py merge` with the same options", metavar="K/N")
    layers: str | None = option(None, "also store the class token of these residual blocks, taken in the same "
                                      "forward: all, last, or indices like 0,4,8 (/layers/<k>)", metavar="SPEC",
                                identity=True)
    perturb: tuple[str, ...] = option((), "also embed perturbed copies of every row: jpeg:90,70 blur:1,2 "
                                          "resize:0.5 noise:0.02 (/perturbed/<kind:level>)", metavar="KIND:LEVELS",
                                      spaced=True, identity="perturbations")
    perturb_seed: int = option(0, "seed of the noise perturbation (per row and copy)", identity=True,
                               identity_if="perturb")
