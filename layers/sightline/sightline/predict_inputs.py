"""The images of a predict request, taken out of whatever carried them: a multipart form, a zip, an S3 object.

Watson's classify took ``images_file`` as a form field holding one image or a zip of up to 20; Sightline does
the same, and a zip may also be the whole body (``application/zip``). Every way a carrier can be wrong is a 400
or 413 that says what and where; a zip member that is not a usable image is answered on its own (its entry in
the answer carries the error) while the other members are predicted.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import PurePosixPath

from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.errors import BadRequest, NotFound, PayloadTooLarge

# Watson's limit for a zip of images to classify in one request.
MAX_IMAGES_PER_ZIP = 20
# More members than this is not a zip of images for one request, whatever they are.
MAX_ZIP_MEMBERS = 200
# A form field other than the file is an option: a few characters.
MAX_FORM_FIELD_BYTES = 64 * 1024
ZIP_MEDIA_TYPES = ("application/zip", "application/x-zip-compressed")
FORM_MEDIA_TYPE = "multipart/form-data"
IMAGES_FIELD = "images_file"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first member, or the end record of an empty one
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class NamedImage:
    """One image to predict: its bytes, or why it cannot be one (``error``), with the name the caller gave it."""

    name: str | None
    data: bytes = b""
    error: BadRequest | PayloadTooLarge | None = None


@dataclass(frozen=True)
class Form:
    """A multipart form: the file field's bytes and file name, and the other fields as text."""

    file: bytes | None
    filename: str | None
    fields: dict[str, str]


def is_zip(data: bytes) -> bool:
    return data[:4] in _ZIP_MAGIC


def parse_form(body: bytes, content_type: str) -> Form:
    """The fields of a ``multipart/form-data`` body; 400 when it is not one."""
    if "boundary=" not in content_type.lower():
        raise BadRequest("multipart/form-data needs a boundary parameter in its Content-Type", code="invalid_form")
    # The email parser reads MIME multiparts; a form is one, once its Content-Type is the message's header.
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1", "replace")
                                                   + b"\r\n\r\n" + body)
    if not message.is_multipart() or message.defects:
        raise BadRequest("body is not a readable multipart/form-data form", code="invalid_form")
    file: bytes | None = None
    filename: str | None = None
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = _field_name(part)
        payload = part.get_payload(decode=True) or b""
        if name == IMAGES_FIELD:
            if file is not None:
                raise BadRequest(f"the form has more than one {IMAGES_FIELD} field: send one image or one zip",
                                 code="invalid_form")
            file, filename = payload, part.get_filename()
        elif name:
            if len(payload) > MAX_FORM_FIELD_BYTES:
                raise BadRequest(f"form field {name!r} is {len(payload)} bytes; options are at most "
                                 f"{MAX_FORM_FIELD_BYTES} bytes", code="invalid_form")
            try:
                fields[name] = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"form field {name!r} is not UTF-8 text", code="invalid_form") from None
    return Form(file, filename, fields)


def _field_name(part: Message) -> str | None:
    disposition = part.get("Content-Disposition")
    return part.get_param("name", header="content-disposition") if disposition else None  # type: ignore[return-value]


def images_of(data: bytes, name: str | None) -> tuple[list[NamedImage], bool]:
    """The images in a carried file: the members of a zip (answered per image: True), or the file itself."""
    if is_zip(data) or (name or "").lower().endswith(".zip"):
        return zip_images(data), True
    return [NamedImage(name, data)], False


def zip_images(data: bytes) -> list[NamedImage]:
    """The image members of a zip of at most ``MAX_IMAGES_PER_ZIP``, in the zip's order. Folders and the
    macOS and dot files archivers add are skipped; any other member that is not an image file is an entry with
    its error, and so is one too large or unreadable."""
    max_bytes = get_settings().max_image_bytes
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise BadRequest(f"the zip is not readable: {error}", code="invalid_zip") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise BadRequest(f"the zip has {len(members)} entries; a zip of images to predict has at most "
                         f"{MAX_IMAGES_PER_ZIP} images", code="too_many_images")
    wanted = [member for member in members if not _skipped(member.filename)]
    if not wanted:
        raise BadRequest("the zip holds no images", code="missing_image")
    if len(wanted) > MAX_IMAGES_PER_ZIP:
        raise BadRequest(f"the zip has {len(wanted)} files; at most {MAX_IMAGES_PER_ZIP} images are predicted "
                         "per request", code="too_many_images")
    images = []
    for member in wanted:
        name = member.filename
        if PurePosixPath(name).suffix.lower() not in _IMAGE_SUFFIXES:
            images.append(NamedImage(name, error=BadRequest(
                f"{name}: not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF)", code="invalid_image")))
        elif member.flag_bits & 0x1:
            images.append(NamedImage(name, error=BadRequest(f"{name}: encrypted members are not read",
                                                            code="invalid_image")))
        elif member.file_size > max_bytes:
            images.append(NamedImage(name, error=PayloadTooLarge(
                f"{name}: {member.file_size} bytes; the limit is {max_bytes} bytes", code="image_too_large")))
        else:
            images.append(_member(archive, member, max_bytes))
    return images


def _skipped(name: str) -> bool:
    path = PurePosixPath(name)
    return name.endswith("/") or path.parts[:1] == ("__MACOSX",) or path.name.startswith(".")


def _member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, max_bytes: int) -> NamedImage:
    try:
        with archive.open(member) as stream:
            # Read past the limit by one byte at most: a header that understates the size cannot make this a bomb.
            data = stream.read(max_bytes + 1)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as error:
        return NamedImage(member.filename, error=BadRequest(f"{member.filename}: unreadable zip member: {error}",
                                                            code="invalid_image"))
    if len(data) > max_bytes:
        return NamedImage(member.filename, error=PayloadTooLarge(
            f"{member.filename}: more than the limit of {max_bytes} bytes", code="image_too_large"))
    return NamedImage(member.filename, data)


def s3_object(uri: str) -> tuple[bytes, str]:
    """The bytes and key of ``s3://bucket/key`` in one of this deployment's buckets (data or artifacts): never
    any other location, so a request cannot make the service read what the caller could not name itself."""
    settings = get_settings()
    try:
        bucket, key = keys.split_location(uri, "")
    except ValueError:
        bucket = key = ""
    if not uri.startswith("s3://") or not bucket or not key:
        raise BadRequest(f"s3_uri must look like s3://bucket/key, got {uri[:200]!r}", code="invalid_s3_uri")
    allowed = [name for name in (settings.data_bucket, settings.artifact_bucket) if name]
    if bucket not in allowed:
        raise BadRequest(f"s3_uri must name an object in this deployment's buckets ({', '.join(allowed)}), "
                         f"not in {bucket!r}", code="invalid_s3_uri")
    limit = max(settings.max_image_bytes, MAX_IMAGES_PER_ZIP * settings.max_image_bytes)
    try:
        # Only this many bytes are read, whatever the object's size: the answer says when it was bigger.
        response = aws.client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{limit}")
        data = response["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "InvalidRange":  # an empty object has no byte 0
            return b"", key
        if code in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403"):
            # Missing, or not ours to read: the same answer, so a caller cannot probe for keys.
            raise NotFound(f"no readable object at {uri}", code="image_not_found") from None
        raise
    size = _object_size(response, len(data))
    if size > limit:
        raise PayloadTooLarge(f"{uri} is {size} bytes; the limit is {limit} bytes", code="image_too_large")
    return data, key


def _object_size(response: dict, read: int) -> int:
    # A ranged GET's answer says the whole size after the slash of Content-Range: "bytes 0-99/12345".
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else read
