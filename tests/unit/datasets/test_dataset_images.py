from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from sightline.datasets import store
from sightline.datasets.images import InvalidImage, inspect_image
from dataset_helpers import solid_image
from support import png


@pytest.mark.parametrize(
    ("fmt", "extension"),
    [("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("GIF", "gif"), ("WEBP", "webp"), ("TIFF", "tiff")],
)
def test_supported_formats(fmt, extension):
    data = solid_image(fmt, (12, 7))

    info = inspect_image(data, max_pixels=1_000)

    assert (info.extension, info.width, info.height) == (extension, 12, 7)
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_exif_orientation_gives_the_displayed_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 40x20, shown 20x40
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (1, 2, 3)).save(buffer, format="JPEG", exif=exif.tobytes())

    info = inspect_image(buffer.getvalue(), max_pixels=10_000)

    assert (info.width, info.height) == (20, 40)


def test_too_many_pixels_is_rejected_before_decoding():
    with pytest.raises(InvalidImage, match="image too large"):
        inspect_image(solid_image("PNG", (100, 100)), max_pixels=5_000)


def test_decompression_bomb_is_an_invalid_image():
    # 10000x10000 pixels in a few KiB: over the configured limit and over Pillow's own warning threshold.
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 100_000

    with pytest.raises(InvalidImage, match="too large"):
        inspect_image(buffer.getvalue(), max_pixels=40_000_000)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a broken", b"%PDF-1.4 not an image", solid_image("PNG")[:40], solid_image("ICO", (16, 16))],
)
def test_unreadable_or_unsupported_data(data):
    with pytest.raises(InvalidImage, match="not a readable image"):
        inspect_image(data, max_pixels=1_000_000)


def test_extension_comes_from_the_content_not_the_name(datasets):
    datasets.register("datasets/x/cat/really-a-png.jpg", png(1))

    [item] = store.dataset_items(["x"], "classification")
    assert item["image"]["key"].endswith(".png")


def test_a_16_bit_tiff_registers_and_its_thumbnail_keeps_its_greys():
    from sightline.datasets.images import make_thumbnail, needs_thumbnail

    buffer = io.BytesIO()
    samples = np.zeros((300, 600), dtype=np.uint16)
    samples[:, :300] = 30_000  # left half mid-grey, right half black
    grey = Image.fromarray(samples)  # mode I;16
    grey.save(buffer, format="TIFF")
    info = inspect_image(buffer.getvalue(), max_pixels=1_000_000)
    assert (info.extension, info.width, info.height) == ("tiff", 600, 300) and needs_thumbnail(info)

    with Image.open(io.BytesIO(make_thumbnail(buffer.getvalue()))) as thumbnail:
        assert (thumbnail.mode, thumbnail.size) == ("RGB", (256, 128))
        left, right = thumbnail.getpixel((60, 64)), thumbnail.getpixel((200, 64))
    assert abs(left[0] - round(30_000 / 257)) <= 3 and right[0] <= 3  # not clipped to white


def test_a_thumbnail_is_upright_as_the_exif_orientation_says():
    from sightline.datasets.images import make_thumbnail

    exif = Image.Exif()
    exif[0x0112] = 6  # stored 800x400, shown 400x800
    buffer = io.BytesIO()
    Image.new("RGB", (800, 400), (200, 10, 10)).save(buffer, format="JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(make_thumbnail(buffer.getvalue()))) as thumbnail:
        assert thumbnail.size == (128, 256)
