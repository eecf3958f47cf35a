"""Validation of one image file with Pillow: is it a whole, decodable image of a supported format and size."""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import ExifTags, Image

from sightline.imaging import to_rgb, upright

# Pillow format name -> the extension of the content-addressed copy (taken from the content, not the file name).
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "WEBP": "webp", "TIFF": "tiff"}
_CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "bmp": "image/bmp",
    "gif": "image/gif",
    "webp": "image/webp",
    "tiff": "image/tiff",
}
# Only these decoders ever see uploaded bytes (no EPS, PSD, ... plugins). Multi-picture JPEGs from cameras open
# through the JPEG decoder and report "MPO".
_ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
# Images bigger than this on their longer side get a JPEG thumbnail for GET /v1/datasets/{name}/images.
THUMBNAIL_SIDE = 256
# EXIF orientations that rotate by 90 degrees: the displayed image is height x width.
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


class InvalidImage(ValueError):
    """Not a usable image; the message is the issue's reason."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    extension: str
    width: int  # as displayed, EXIF orientation applied
    height: int

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.extension]


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Check that ``data`` is a readable JPEG/PNG/BMP/GIF/WEBP/TIFF of at most ``max_pixels``; raises ``InvalidImage``."""
    if not data:
        raise InvalidImage("not a readable image: the file is empty")
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; a warning here is a bomb like any other.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS) as probe:
                image_format = probe.format or ""
                width, height = probe.size
                if width * height > max_pixels:
                    raise InvalidImage(
                        f"image too large: {width}x{height} is {width * height} pixels, more than the limit of {max_pixels}"
                    )
                probe.verify()  # checksums and structure, without decoding
            # verify() leaves the image unusable: decode a fresh one to catch truncated or corrupt pixel data.
            with Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS) as image:
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
                image.load()
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise InvalidImage(f"image too large (decompression bomb): {error}") from None
        except Exception as error:  # noqa: BLE001 - any decoder failure means the same thing: unusable data
            raise InvalidImage(f"not a readable image: {error or type(error).__name__}") from None
    if image_format not in _EXTENSIONS:
        raise InvalidImage(f"not a readable image: unsupported format {image_format or 'unknown'}")
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        extension=_EXTENSIONS[image_format],
        width=width,
        height=height,
    )


def needs_thumbnail(info: ImageInfo) -> bool:
    return max(info.width, info.height) > THUMBNAIL_SIDE


def make_thumbnail(data: bytes) -> bytes:
    """A JPEG of an already inspected image, upright (EXIF orientation applied), at most ``THUMBNAIL_SIDE`` pixels
    on its longer side; 16-bit and palette images are brought to 8-bit RGB."""
    with Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS) as image:
        image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # JPEG decodes at a reduced scale: much faster
        rgb = to_rgb(upright(image))  # as training and predict see it
        rgb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()
