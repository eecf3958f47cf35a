from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sightline.errors import BadRequest, PayloadTooLarge
from sightline.imaging import InputSpec, decode_image, to_tensor
from predict_helpers import encode, png_claiming, solid

RED, BLUE = (230, 20, 20), (20, 20, 230)


def halves(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half red, right half blue."""
    image = solid(BLUE, size)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    return image


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, quality=95)


def transparent_palette() -> Image.Image:
    image = solid(RED, (8, 8)).convert("P", palette=Image.Palette.ADAPTIVE)
    image.info["transparency"] = image.getpixel((0, 0))  # every pixel transparent: a tRNS chunk
    return image


def dominant(pixel: tuple[int, int, int]) -> str:
    return "red" if pixel[0] > pixel[2] else "blue"


def test_png_and_jpeg_decode_to_rgb_at_their_size():
    for fmt in ("PNG", "JPEG"):
        image = decode_image(encode(halves((40, 20)), fmt))
        assert image.mode == "RGB"
        assert image.size == (40, 20)
        assert dominant(image.getpixel((5, 10))) == "red"
        assert dominant(image.getpixel((35, 10))) == "blue"


def test_exif_orientation_turns_the_image_upright():
    # 6: stored rotated; shown turned 90 degrees clockwise, so the stored left edge becomes the top.
    turned = decode_image(with_orientation(halves((40, 20)), 6))
    assert turned.size == (20, 40)
    assert dominant(turned.getpixel((10, 5))) == "red"
    assert dominant(turned.getpixel((10, 35))) == "blue"

    # 3: stored upside down.
    flipped = decode_image(with_orientation(halves((40, 20)), 3))
    assert flipped.size == (40, 20)
    assert dominant(flipped.getpixel((5, 10))) == "blue"
    assert dominant(flipped.getpixel((35, 10))) == "red"


@pytest.mark.parametrize(
    ("source", "fmt", "expected"),
    [
        (Image.new("L", (8, 8), 200), "PNG", (200, 200, 200)),
        (Image.new("LA", (8, 8), (90, 255)), "PNG", (90, 90, 90)),
        (Image.new("RGBA", (8, 8), (230, 20, 20, 128)), "PNG", (230, 20, 20)),
        (solid(RED, (8, 8)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG", RED),
        (solid(RED, (8, 8)).convert("P", palette=Image.Palette.ADAPTIVE), "GIF", RED),
        (transparent_palette(), "PNG", RED),
        (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (Image.new("I;16", (8, 8), 40000), "PNG", (156, 156, 156)),  # 16-bit grey keeps its brightness
    ],
    ids=["grey", "grey-alpha", "rgba", "palette-png", "palette-gif", "palette-transparent", "cmyk-jpeg", "grey-16-bit"],
)
def test_every_common_mode_becomes_rgb(source: Image.Image, fmt: str, expected: tuple[int, int, int]):
    image = decode_image(encode(source, fmt))
    assert image.mode == "RGB"
    assert image.size == (8, 8)
    assert np.allclose(image.getpixel((4, 4)), expected, atol=3)


@pytest.mark.parametrize("body", [b"hello, I am not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a"])
def test_anything_but_an_image_is_a_bad_request(body: bytes):
    with pytest.raises(BadRequest) as raised:
        decode_image(body)
    assert raised.value.status == 400
    assert raised.value.message.startswith("body is not a readable JPEG or PNG image: ")


def test_formats_outside_the_allowed_few_are_refused():
    # Pillow reads PPM and many more; an endpoint open to anyone only decodes the common web formats.
    with pytest.raises(BadRequest):
        decode_image(encode(solid(RED), "PPM"))
    for fmt in ("WEBP", "BMP", "TIFF"):
        assert decode_image(encode(solid(RED), fmt)).size == (30, 20)


def test_a_truncated_image_is_a_bad_request():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for fmt in ("PNG", "JPEG"):
        whole = encode(noisy, fmt)
        with pytest.raises(BadRequest) as raised:
            decode_image(whole[: len(whole) // 2])
        assert raised.value.status == 400


def test_a_body_over_the_byte_limit_is_too_large(monkeypatch):
    from sightline.config import get_settings

    body = encode(halves((40, 20)))
    with pytest.raises(PayloadTooLarge) as raised:
        decode_image(body, max_bytes=len(body) - 1)
    assert raised.value.status == 413

    monkeypatch.setenv("MAX_IMAGE_BYTES", str(len(body) - 1))
    get_settings.cache_clear()
    with pytest.raises(PayloadTooLarge):
        decode_image(body)


@pytest.mark.parametrize("side", [10_000, 100_000], ids=["over-our-limit", "over-pillows-limit"])
def test_a_pixel_bomb_is_refused_before_decoding(side: int):
    bomb = png_claiming(side, side)
    assert len(bomb) < 200
    with pytest.raises(PayloadTooLarge) as raised:
        decode_image(bomb)
    assert raised.value.status == 413
    assert "pixels" in raised.value.message


def test_the_pixel_limit_comes_from_the_settings(monkeypatch):
    from sightline.config import get_settings

    monkeypatch.setenv("MAX_IMAGE_PIXELS", "399")
    get_settings.cache_clear()
    with pytest.raises(PayloadTooLarge) as raised:
        decode_image(encode(solid(RED, (20, 20))))
    assert "20x20 = 400 pixels" in raised.value.message
    assert decode_image(encode(solid(RED, (19, 21)))).size == (19, 21)


def spec(**overrides) -> InputSpec:
    fields = {"name": "input", "width": 6, "height": 4, "batch": False, "scale": 255.0,
              "mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 2.0], **overrides}
    return InputSpec.from_labels({"input": fields})


def test_the_tensor_is_normalised_chw_float32():
    tensor = to_tensor(solid((255, 51, 102), (30, 20)), spec())
    assert tensor.dtype == np.float32
    assert tensor.shape == (3, 4, 6)
    # x = (pixel / scale - mean) / std, channel by channel in RGB order
    expected = [(1.0 - 0.5) / 0.5, (0.2 - 0.25) / 0.25, (0.4 - 0.0) / 2.0]
    assert np.allclose(tensor.mean(axis=(1, 2)), expected, atol=1e-5)
    assert np.allclose(tensor.std(axis=(1, 2)), 0.0, atol=1e-5)


def test_the_tensor_is_stretched_not_letterboxed_and_batched_on_request():
    # A tall image squeezed into a wide input: the red left half still fills exactly the left half.
    tensor = to_tensor(halves((20, 60)), spec(width=8, height=2, batch=True, mean=[0, 0, 0], std=[1, 1, 1]))
    assert tensor.shape == (1, 3, 2, 8)
    red = tensor[0, 0]
    assert (red[:, :3] > 0.8).all() and (red[:, 5:] < 0.2).all()


@pytest.mark.parametrize(
    "bad", [{}, {"input": {"name": "x", "width": 0, "height": 4}}, {"input": {"name": "x", "width": 4}},
            {"input": {"name": "x", "width": 4, "height": 4, "mean": [0, 0]}}],
)
def test_an_unusable_input_spec_is_refused(bad: dict):
    with pytest.raises(ValueError):
        InputSpec.from_labels(bad)
