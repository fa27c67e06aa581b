"""Workers hand over uint8 pixels and the device normalises: embeddings equal open_clip's transform
(PNG: bit for bit; JPEG decoded at reduced DCT scale: cosine >= 0.999)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.extract.reader import ImageFiles, collate_images
from clipforensics.synthetic.write import generate


def frames(tmp_path: Path, size: int, n: int = 4) -> list[Path]:
    root = generate(tmp_path / f"ff{size}", videos=2, frames=1, size=size, seed=3)
    return sorted(root.rglob("*.png"))[:n]


def as_jpeg(paths: list[Path], quality: int = 90) -> list[Path]:
    out = []
    for p in paths:
        with Image.open(p) as img:
            img.convert("RGB").save(p.with_suffix(".jpg"), quality=quality)
        out.append(p.with_suffix(".jpg"))
    return out


def both_ways(loaded, root: Path, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uint8 batch from the reader, open_clip's float batch, the reader batch normalised)."""
    names = [str(p.relative_to(root)) for p in paths]
    pixels, _, reasons = collate_images([ImageFiles(root, names, loaded.pixels, loaded.image_size, uint8=True)[i]
                                         for i in range(len(names))])
    assert pixels.dtype == torch.uint8 and reasons == [""] * len(names)
    reference = torch.stack([loaded.preprocess(Image.open(p).convert("RGB")) for p in paths])
    return pixels, reference, loaded.normalize(pixels.clone())


def cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()


def test_png_pixels_normalised_on_the_device_equal_open_clips_transform(tmp_path):
    loaded = load_model(ModelSettings(model="tiny-vit", pretrained="none"), "cpu", "fp32")
    paths = frames(tmp_path, 96)
    pixels, reference, normalised = both_ways(loaded, tmp_path, paths)
    assert pixels.shape == (len(paths), 3, 64, 64) and torch.equal(normalised, reference)
    assert torch.equal(loaded.encode_images(pixels), loaded.encode_images(reference))


@pytest.mark.parametrize("model, size", [("tiny-vit", 256), pytest.param("ViT-B-32", 512, marks=pytest.mark.slow)])
def test_jpeg_decoded_at_reduced_scale_keeps_the_embeddings(tmp_path, model, size):
    """A JPEG twice the model's size or more is decoded at 1/2..1/8 scale before the one resize."""
    loaded = load_model(ModelSettings(model=model, pretrained="none"), "cpu", "fp32")
    paths = as_jpeg(frames(tmp_path, size))
    with Image.open(paths[0]) as img:
        img.draft("RGB", (loaded.image_size, loaded.image_size))
        assert img.size[0] < size  # the reduced decode really happens
    _, reference, normalised = both_ways(loaded, tmp_path, paths)
    assert cosines(loaded.encode_images(normalised), loaded.encode_images(reference)).min() >= 0.999


def test_unreadable_file_is_a_reason_and_a_uint8_blank(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    image, i, reason = ImageFiles(tmp_path, ["bad.png"], lambda img: img, 64, uint8=True)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64) and i == 0 and "UnidentifiedImageError" in reason
