"""Request images: decode them defensively and turn them into the tensor a model expects.

The tensor layout comes from ``labels.json["input"]`` (docs/architecture.md): RGB, stretched to
``width`` x ``height``, ``x = (pixel / scale - mean) / std``, CHW, with a leading batch axis when ``batch``.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from sightline.config import get_settings
from sightline.errors import BadRequest, PayloadTooLarge

# Formats with plain, well-trodden decoders. Pillow can open more (EPS even runs Ghostscript), and an
# endpoint that takes bytes from anyone should not. "JPEG" also opens the MPO files many cameras write.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# EXIF Orientation: 1 is upright, 2 to 8 a flip or turn (5 to 8 by a quarter, so width and height swap).
_ORIENTATION_TAG = 0x0112
_ORIENTATIONS = range(1, 9)
_QUARTER_TURNS = {5, 6, 7, 8}
# Decoders that can decode at 1/2, 1/4 or 1/8 scale (libjpeg); MPO is a camera's JPEG with extra frames.
_SCALABLE_FORMATS = ("JPEG", "MPO")
# Image.info key of the upright size as sent, set when the decoded image is smaller (``fit``).
SOURCE_SIZE = "sightline.source_size"

# Pillow modes whose samples are wider than 8 bits; ``convert("RGB")`` would clip them to white.
_WIDE_GREY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _not_an_image(reason: object) -> BadRequest:
    return BadRequest(f"body is not a readable JPEG or PNG image: {reason}", code="invalid_image")


def decode_image(data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None,
                 fit: tuple[int, int] | None = None) -> Image.Image:
    """An upright RGB image from encoded bytes.

    ``fit``: the (width, height) the image will be resized to (a model's input). A JPEG at least twice that size
    is then decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, ``Image.draft``), still no smaller than
    ``fit``: a fraction of the decoding and resizing work. The answer's sizes and boxes stay in the sent image's
    pixels: :func:`source_size` gives them.

    Raises PayloadTooLarge (413) past ``max_bytes`` or ``max_pixels`` (defaults from the settings) and
    BadRequest (400) for anything that is not a complete image in one of ``ALLOWED_FORMATS``.
    """
    settings = get_settings()
    max_bytes = settings.max_image_bytes if max_bytes is None else max_bytes
    max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"image is {len(data)} bytes; the limit is {max_bytes} bytes", code="image_too_large"
        )
    if not data:
        raise _not_an_image("the body is empty")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the one that counts; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(f"image has too many pixels: {error}", code="image_too_large") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise _not_an_image(error) from None

    # Only the header has been read so far: refuse a pixel bomb before decoding a single pixel of it.
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels",
            code="image_too_large",
        )
    if width == 0 or height == 0:
        raise _not_an_image(f"it has no pixels ({width}x{height})")
    try:
        orientation = _orientation(image)
        if fit is not None and image.format in _SCALABLE_FORMATS:
            # The stored image is sideways for orientations 5 to 8: its width is the upright height.
            image.draft("RGB", (fit[1], fit[0]) if orientation in _QUARTER_TURNS else fit)
        image.load()
        decoded = to_rgb(_turn_upright(image, orientation))
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise _not_an_image(error) from None
    if decoded.size != _upright_size((width, height), orientation):
        decoded.info[SOURCE_SIZE] = _upright_size((width, height), orientation)
    return decoded


def source_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the upright image as sent, also when :func:`decode_image` decoded it smaller."""
    return image.info.get(SOURCE_SIZE, image.size)


def _orientation(image: Image.Image) -> int:
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
        return orientation if orientation in _ORIENTATIONS else 1
    except Exception:  # noqa: BLE001 - a malformed EXIF block should not cost the prediction: pixels as stored
        return 1


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _QUARTER_TURNS else size


def _turn_upright(image: Image.Image, orientation: int) -> Image.Image:
    # upright() copies an image that is already upright (most are); only a turned one needs it.
    return image if orientation == 1 else upright(image)


def upright(image: Image.Image) -> Image.Image:
    """The image as a person sees it: phones store pixels sideways and say so in EXIF ``Orientation``."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block should not cost the prediction; keep the pixels as stored
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Three 8-bit channels whatever the source mode (L, LA, P, RGBA, CMYK, 16-bit grey...)."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_GREY_MODES:
        samples = np.asarray(image, dtype=np.float32)
        if image.mode != "F":
            samples = samples / 257.0  # 16-bit samples (what PNG stores) onto 0..255
        grey = Image.fromarray(np.clip(samples, 0, 255).round().astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if image.mode == "P":
        # Through RGBA so a palette's transparency is read the way Pillow expects, then dropped like any alpha.
        image = image.convert("RGBA")
    return image.convert("RGB")


@dataclass(frozen=True)
class InputSpec:
    """How to feed a model: ``labels.json["input"]``."""

    name: str
    width: int
    height: int
    batch: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_labels(cls, labels: dict) -> InputSpec:
        spec = labels.get("input")
        if not isinstance(spec, dict):
            raise ValueError("labels.json has no 'input' object")
        try:
            parsed = cls(
                name=str(spec["name"]),
                width=int(spec["width"]),
                height=int(spec["height"]),
                batch=bool(spec.get("batch", False)),
                scale=float(spec.get("scale", 255.0)),
                mean=_triple(spec.get("mean", (0.0, 0.0, 0.0))),
                std=_triple(spec.get("std", (1.0, 1.0, 1.0))),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"labels.json 'input' is invalid: {error!r}") from None
        if parsed.width <= 0 or parsed.height <= 0 or parsed.scale == 0 or 0.0 in parsed.std:
            raise ValueError(f"labels.json 'input' is invalid: {spec}")
        return parsed

    def to_dict(self) -> dict:
        """The ``labels.json["input"]`` object this spec is read from."""
        return {
            "name": self.name, "width": self.width, "height": self.height, "batch": self.batch,
            "scale": self.scale, "mean": list(self.mean), "std": list(self.std),
        }


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) != 3:
        raise ValueError(f"expected one value per RGB channel, got {list(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))


def to_tensor(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """The float32 model input for an RGB image: stretched (no letterbox), normalised, CHW, maybe batched."""
    resized = to_rgb(image).resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized)  # H, W, C uint8: a view of Pillow's buffer
    scale, offset = _affine(spec)
    tensor = np.empty((3, spec.height, spec.width), dtype=np.float32)
    # (pixel / scale - mean) / std as one multiply-add per channel, written straight into the CHW tensor that
    # onnxruntime reads without a copy (C-contiguous float32): no float HWC image, no transposed copy.
    for channel in range(3):
        plane = tensor[channel]
        np.multiply(pixels[:, :, channel], scale[channel], out=plane, dtype=np.float32)
        plane += offset[channel]
    return tensor[np.newaxis] if spec.batch else tensor


def _affine(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """``scale`` and ``offset`` per channel such that ``pixel * scale + offset == (pixel / spec.scale - mean) / std``
    (to float32 rounding)."""
    std = np.asarray(spec.std, dtype=np.float64)
    scale = 1.0 / (spec.scale * std)
    offset = -np.asarray(spec.mean, dtype=np.float64) / std
    return scale.astype(np.float32), offset.astype(np.float32)
