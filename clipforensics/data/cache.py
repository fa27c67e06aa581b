"""The feature cache: one HDF5 file per extraction run, self-describing and checked on read.

Schema (N images that decoded, D embedding dims):
    /image_embeddings          N x D float16   projected image embedding, before L2 normalisation
    /path /label /manipulation /video /target /source   N   manifest columns (utf-8 strings, label int8)
    /failed/path /failed/reason                          images that could not be read, and why
    /prompts/<set>/text /embedding /label                prompts, their float32 embeddings, class 0/1
    /layers/<k>                N x W float16   class token after residual block k (--layers; W = tower width)
    /perturbed/<kind:level>/image_embeddings   N x D float16   the same rows perturbed (--perturb)
    attributes: model, pretrained, weights_fingerprint, init_seed, image_size, mean, std,
                precision, manifest_hash, crops, data_root, package_version, created, ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import pandas as pd

from clipforensics import __version__
from clipforensics.core.io import atomic_path
from clipforensics.core.errors import UserError
from clipforensics.data.manifest import COLUMNS, OFFICIAL_SPLIT

SCHEMA_VERSION = 1
STRING_COLUMNS = tuple(c for c in COLUMNS if c != "label")
OPTIONAL_COLUMNS = (OFFICIAL_SPLIT,)  # written when the manifest has them (a data set's official split)
# Attributes that decide what the embeddings mean: two caches (or a cache and a request) that
# differ in any of these must never be mixed. `crops` is the data root's prepare.json recipe
# (data/crops.py; None for frames prepared elsewhere): the same paths can hold other crops. The model's
# share is what rebuilding the model must reproduce.
MODEL_IDENTITY_KEYS = ("model", "pretrained", "weights_fingerprint", "init_seed", "image_size")
IDENTITY_KEYS = MODEL_IDENTITY_KEYS + ("precision", "manifest_hash", "crops")
_STR = h5py.string_dtype("utf-8")


@dataclass
class PromptEmbeddings:
    texts: list[str]
    embeddings: np.ndarray
    labels: np.ndarray


@dataclass
class FeatureCache:
    """A cache read into memory (100k x 512 float16 is ~100 MB)."""

    path: Path
    attrs: dict[str, Any]
    manifest: pd.DataFrame
    embeddings: np.ndarray
    prompts: dict[str, PromptEmbeddings] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    perturbed: dict[str, np.ndarray] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        return {k: self.attrs.get(k) for k in IDENTITY_KEYS}


def _encode_attr(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) or value is None else value


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and value[:1] in "[{n":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def write_cache(path: str | Path, *, embeddings: np.ndarray, manifest: pd.DataFrame, attrs: Mapping[str, Any],
                prompts: Mapping[str, PromptEmbeddings], failed: pd.DataFrame,
                extras: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write a complete cache atomically: the final path appears only once everything is on disk.

    `extras` are further N-row float16 arrays by path (layers/<k>, perturbed/<kind:level>/image_embeddings)."""
    path = Path(path)
    extras = dict(extras or {})
    if len(embeddings) != len(manifest) or any(len(v) != len(manifest) for v in extras.values()):
        raise ValueError("one embedding per manifest row expected")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            rows = max(1, min(1024, len(embeddings)))
            h5.create_dataset("image_embeddings", data=embeddings.astype(np.float16),
                              chunks=(rows, embeddings.shape[1]))
            for name, values in extras.items():
                h5.create_dataset(name, data=values.astype(np.float16), chunks=(rows, values.shape[1]))
            for col in STRING_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in manifest.columns):
                h5.create_dataset(col, data=manifest[col].astype(str).to_numpy(dtype=object), dtype=_STR)
            h5.create_dataset("label", data=manifest["label"].to_numpy(dtype=np.int8))
            grp = h5.create_group("failed")
            for col in ("path", "reason"):
                grp.create_dataset(col, data=failed[col].astype(str).to_numpy(dtype=object), dtype=_STR)
            for name, p in prompts.items():
                g = h5.create_group(f"prompts/{name}")
                g.create_dataset("text", data=np.array(p.texts, dtype=object), dtype=_STR)
                g.create_dataset("embedding", data=p.embeddings.astype(np.float32))
                g.create_dataset("label", data=np.asarray(p.labels, dtype=np.int8))
            full = {**attrs, "schema_version": SCHEMA_VERSION, "package_version": __version__,
                    "n_images": len(embeddings), "n_failed": len(failed)}
            for key, value in full.items():
                h5.attrs[key] = _encode_attr(value)
    return path


def _strings(ds: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in ds[()]]


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Only the attributes (cheap): used to check a cache before loading it."""
    with _open(path) as h5:
        return {k: _decode_attr(v) for k, v in h5.attrs.items()}


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cache not found: {path}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path} is not a readable HDF5 cache (corrupted or incomplete?): {exc}") from None
    if "image_embeddings" not in h5 or "schema_version" not in h5.attrs:
        h5.close()
        raise UserError(f"{path} is not a clipforensics feature cache (no /image_embeddings)")
    return h5


def read_cache(path: str | Path, expect: Mapping[str, Any] | None = None, *, layers: bool = False,
               perturbed: bool = False) -> FeatureCache:
    """Load a cache; if `expect` is given, any identity attribute that differs is an error.

    Stored block tokens (`layers`) and perturbed copies (`perturbed`) are read only when asked: they
    can be many times the size of the embeddings."""
    path = Path(path)
    try:
        with _open(path) as h5:
            attrs = {k: _decode_attr(v) for k, v in h5.attrs.items()}
            if expect:
                check_identity(attrs, expect, what=str(path))
            manifest = pd.DataFrame({col: _strings(h5[col]) for col in STRING_COLUMNS})
            manifest.insert(1, "label", h5["label"][()].astype(np.int64))
            optional = [col for col in OPTIONAL_COLUMNS if col in h5]
            for col in optional:
                manifest[col] = _strings(h5[col])
            manifest = manifest[list(COLUMNS) + optional]
            embeddings = h5["image_embeddings"][()]
            failed = pd.DataFrame({c: _strings(h5["failed"][c]) for c in ("path", "reason")})
            prompts = {
                name: PromptEmbeddings(_strings(g["text"]), g["embedding"][()], g["label"][()].astype(np.int64))
                for name, g in h5.get("prompts", {}).items()
            }
            stored_layers = {int(k): ds[()] for k, ds in h5.get("layers", {}).items()} if layers else {}
            copies = {name: g["image_embeddings"][()] for name, g in h5.get("perturbed", {}).items()} if perturbed else {}
    except (OSError, KeyError) as exc:
        raise UserError(f"{path} is damaged: {exc}") from None
    return FeatureCache(path, attrs, manifest, embeddings, prompts, failed, stored_layers, copies)


def check_identity(actual: Mapping[str, Any], expect: Mapping[str, Any], what: str) -> None:
    """Raise a UserError naming every identity attribute that differs between two settings."""
    diffs = [f"{k}: {actual.get(k)!r} != {expect[k]!r}" for k in IDENTITY_KEYS
             if k in expect and _norm(actual.get(k)) != _norm(expect[k])]
    if diffs:
        raise UserError(f"{what} was made with other settings ({'; '.join(diffs)})")


def _norm(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict, tuple)) else value
