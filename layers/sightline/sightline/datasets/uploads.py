"""Presigned uploads into a dataset's folder of the data bucket, for clients that hold the API key but no AWS
credentials (``POST /v1/datasets/{name}/uploads``, ``.../uploads/complete``, ``.../uploads/abort``).

A file up to ``SINGLE_PUT_MAX_BYTES`` gets one presigned PUT URL whose signature binds its ``Content-Type`` and
``Content-Length``; a bigger one (an archive) gets a multipart upload: one presigned URL per part, each bound to
its part's length, then a completion call with the parts' ETags. Every URL expires after
``URL_EXPIRY_SECONDS``. Nothing is registered here: the uploaded objects are ordinary objects under
``datasets/<name>/``, and the bucket's notifications register them as any other upload.
"""
from __future__ import annotations

import math
import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from botocore.exceptions import ClientError

from sightline import aws
from sightline.config import get_settings
from sightline.datasets.paths import (
    DATASETS_PREFIX,
    FileKind,
    InvalidKey,
    classify_file,
    parse_object_key,
    unsupported_reason,
)
from sightline.datasets import store
from sightline.datasets.sources import MAX_ANNOTATION_FILE_BYTES, MAX_IMAGE_FILE_BYTES
from sightline.errors import BadRequest, NotFound

MAX_FILES_PER_REQUEST = 1000
SINGLE_PUT_MAX_BYTES = 100 * 1024 * 1024  # above this, a multipart upload
MIN_PART_BYTES = 64 * 1024 * 1024  # S3's own minimum is 5 MiB (all parts but the last)
S3_MAX_PARTS = 10_000
# One answer holds at most this many URLs (about 1.5 KB each with a Lambda role's session token), well inside
# Lambda's 6 MB response. A single file always fits: its parts grow rather than exceed this count.
MAX_URLS_PER_ANSWER = 2000
URL_EXPIRY_SECONDS = 3600
MAX_UPLOAD_ID_CHARS = 1024
MAX_ETAG_CHARS = 1024
FILE_FIELDS = ("path", "size", "content_type", "upload_id")
COMPLETE_FIELDS = ("path", "upload_id", "parts")
ABORT_FIELDS = ("path", "upload_id")
PART_FIELDS = ("part_number", "etag")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,63}/[A-Za-z0-9!#$&^_.+-]{1,63}")
_MIB = 1024 * 1024
_MEDIA_TYPES = mimetypes.MimeTypes()  # the built-in table only


@dataclass(frozen=True)
class UploadFile:
    """One requested file, checked: where it goes and what the client will send."""

    path: str  # relative to the dataset
    key: str
    size: int
    content_type: str
    upload_id: str | None  # an existing multipart upload to sign again (its URLs expired)


# ---------------------------------------------------------------- checks


def _check_dataset(name: str) -> None:
    store.check_accepts_uploads(name)


def _check_fields(entry: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise BadRequest(f"{where}: unknown fields {', '.join(unknown)} (allowed: {', '.join(allowed)})",
                         code="unknown_field")


def object_key(dataset: str, path: Any, where: str = "path") -> str:
    """The data bucket key of ``path`` (relative to the dataset), or a 400 saying what is wrong with it."""
    if not isinstance(path, str) or not path:
        raise BadRequest(f"{where} must be a file path relative to the dataset, like cats/1.jpg", code="invalid_path")
    shown = repr(path[:120])
    if path.startswith("/"):
        raise BadRequest(f"{where} {shown} is absolute: give it relative to the dataset", code="invalid_path")
    if "\\" in path:
        raise BadRequest(f"{where} {shown} contains '\\': separate folders with '/'", code="invalid_path")
    if not path.isprintable():
        raise BadRequest(f"{where} {shown} contains control or other non-printable characters", code="invalid_path")
    parts = path.split("/")
    if any(part in (".", "..") for part in parts):
        raise BadRequest(f"{where} {shown} has '.' or '..' segments", code="invalid_path")
    if any(not part.strip() for part in parts):
        raise BadRequest(f"{where} {shown} has an empty or blank folder or file name", code="invalid_path")
    try:
        return parse_object_key(f"{DATASETS_PREFIX}{dataset}/{path}").key
    except InvalidKey as error:
        raise BadRequest(f"{where} {shown}: {error.reason}", code="invalid_path") from None


def _size_limit(path: str, kind: FileKind, where: str) -> int:
    if kind is FileKind.IMAGE:
        return MAX_IMAGE_FILE_BYTES
    if kind is FileKind.ANNOTATION:
        return MAX_ANNOTATION_FILE_BYTES
    if kind is FileKind.ARCHIVE:
        return get_settings().max_archive_bytes
    if kind is FileKind.SKIP:
        raise BadRequest(f"{where} {path[:120]!r} is a hidden or system file (or a folder) that registration ignores",
                         code="invalid_path")
    raise BadRequest(f"{where} {path[:120]!r}: {unsupported_reason(path)}; upload images, archives (.zip, .tar, "
                     ".tar.gz) or annotation files", code="unsupported_file_type")


def _upload_file(dataset: str, entry: Any, index: int) -> UploadFile:
    where = f"files[{index}]"
    if not isinstance(entry, dict):
        raise BadRequest(f'{where} must be an object like {{"path": "cats/1.jpg", "size": 12345}}',
                         code="invalid_file")
    _check_fields(entry, FILE_FIELDS, where)
    key = object_key(dataset, entry.get("path"), f"{where}.path")
    path = entry["path"]
    limit = _size_limit(path, classify_file(path), f"{where}.path")
    size = entry.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BadRequest(f"{where}.size must be the file's size in bytes (a positive integer), got {size!r:.60}",
                         code="invalid_size")
    if size > limit:
        raise BadRequest(f"{where} ({path[:120]!r}) is {size} bytes; files of its kind may be at most {limit} bytes",
                         code="file_too_large")
    content_type = entry.get("content_type")
    if content_type is None:
        content_type = default_content_type(path)
    elif not isinstance(content_type, str) or not _MEDIA_TYPE.fullmatch(content_type):
        raise BadRequest(f"{where}.content_type must be a media type like image/jpeg, got {content_type!r:.80}",
                         code="invalid_content_type")
    upload_id = entry.get("upload_id")
    if upload_id is not None:
        _check_upload_id(upload_id, f"{where}.upload_id")
        if size <= SINGLE_PUT_MAX_BYTES:
            raise BadRequest(f"{where}.upload_id: files up to {SINGLE_PUT_MAX_BYTES} bytes are not uploaded in parts",
                             code="invalid_upload_id")
    return UploadFile(path=path, key=key, size=size, content_type=content_type, upload_id=upload_id)


def default_content_type(path: str) -> str:
    """The media type of a file named ``path`` from Python's own table (never the machine's, so every machine
    answers the same); ``application/octet-stream`` when it has none."""
    media_type, encoding = _MEDIA_TYPES.guess_type(path, strict=False)
    if encoding == "gzip":
        return "application/gzip"
    return media_type or "application/octet-stream"


def _check_upload_id(upload_id: Any, where: str) -> str:
    if not isinstance(upload_id, str) or not 1 <= len(upload_id) <= MAX_UPLOAD_ID_CHARS or not upload_id.isprintable() \
            or any(character.isspace() for character in upload_id):
        raise BadRequest(f"{where} must be the upload_id the uploads answer gave", code="invalid_upload_id")
    return upload_id


def part_size(size: int) -> int:
    """The part size of a multipart upload of ``size`` bytes: ``MIN_PART_BYTES``, or bigger (whole MiB) so that
    the parts fit in one answer."""
    needed = math.ceil(size / MAX_URLS_PER_ANSWER)
    return max(MIN_PART_BYTES, math.ceil(needed / _MIB) * _MIB)


def _url_count(file: UploadFile) -> int:
    return 1 if file.size <= SINGLE_PUT_MAX_BYTES else math.ceil(file.size / part_size(file.size))


def file_entries(request: dict[str, Any], example: str) -> list[Any]:
    """The ``files`` list of a request that names files of a dataset (at most ``MAX_FILES_PER_REQUEST``), or a
    400 saying what is wrong with it."""
    _check_fields(request, ("files",), "request")
    entries = request.get("files")
    if not isinstance(entries, list) or not entries:
        raise BadRequest(f"files must be a non-empty list like [{example}]", code="invalid_files")
    if len(entries) > MAX_FILES_PER_REQUEST:
        raise BadRequest(f"{len(entries)} files in one request; at most {MAX_FILES_PER_REQUEST}: split the request",
                         code="too_many_files")
    return entries


def _files(dataset: str, request: dict[str, Any]) -> list[UploadFile]:
    entries = file_entries(request, '{"path": "cats/1.jpg", "size": 12345}')
    files = [_upload_file(dataset, entry, index) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for file in files:
        if file.key in seen:
            raise BadRequest(f"path {file.path[:120]!r} is listed twice", code="duplicate_path")
        seen.add(file.key)
    urls = sum(_url_count(file) for file in files)
    if urls > MAX_URLS_PER_ANSWER:
        raise BadRequest(f"these files need {urls} upload URLs; one answer holds at most {MAX_URLS_PER_ANSWER}: "
                         "split the request", code="too_many_files")
    return files


# ---------------------------------------------------------------- URLs


def _presign(operation: str, params: dict[str, Any]) -> str:
    return aws.presigning_client("s3").generate_presigned_url(operation, Params=params, ExpiresIn=URL_EXPIRY_SECONDS)


def _single_put(bucket: str, file: UploadFile) -> dict[str, Any]:
    params = {"Bucket": bucket, "Key": file.key, "ContentType": file.content_type, "ContentLength": file.size}
    return {
        "type": "single",
        "method": "PUT",
        "url": _presign("put_object", params),
        "headers": {"Content-Type": file.content_type, "Content-Length": str(file.size)},
    }


def _uploaded_parts(bucket: str, file: UploadFile) -> dict[int, str]:
    """The parts S3 already holds of ``file``'s multipart upload (part number -> ETag); 404 when it is gone."""
    parts: dict[int, str] = {}
    request: dict[str, Any] = {"Bucket": bucket, "Key": file.key, "UploadId": file.upload_id}
    while True:
        try:
            page = aws.client("s3").list_parts(**request)
        except ClientError as error:
            _raise_upload_error(error, file.path)
        parts.update({part["PartNumber"]: part["ETag"] for part in page.get("Parts", [])})
        if not page.get("IsTruncated"):
            return parts
        request["PartNumberMarker"] = page["NextPartNumberMarker"]


def _multipart(bucket: str, file: UploadFile) -> dict[str, Any]:
    if file.upload_id is None:
        upload_id = aws.client("s3").create_multipart_upload(
            Bucket=bucket, Key=file.key, ContentType=file.content_type
        )["UploadId"]
        uploaded: dict[int, str] = {}
    else:
        upload_id, uploaded = file.upload_id, _uploaded_parts(bucket, file)
    size = part_size(file.size)
    parts = []
    for number in range(1, math.ceil(file.size / size) + 1):
        length = min(size, file.size - (number - 1) * size)
        if number in uploaded:
            parts.append({"part_number": number, "size": length, "etag": uploaded[number]})
            continue
        params = {"Bucket": bucket, "Key": file.key, "UploadId": upload_id, "PartNumber": number,
                  "ContentLength": length}
        parts.append({"part_number": number, "size": length, "method": "PUT", "url": _presign("upload_part", params),
                      "headers": {"Content-Length": str(length)}})
    return {"type": "multipart", "upload_id": upload_id, "part_size": size, "parts": parts,
            "headers": {"Content-Type": file.content_type}}


def create_uploads(dataset: str, request: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/datasets/{name}/uploads``: where and how to upload each file (the dataset need not exist)."""
    _check_dataset(dataset)
    files = _files(dataset, request)
    bucket = get_settings().data_bucket
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=URL_EXPIRY_SECONDS)
    uploads = [
        {"path": file.path, "key": file.key, "size": file.size,
         **(_single_put(bucket, file) if file.size <= SINGLE_PUT_MAX_BYTES else _multipart(bucket, file))}
        for file in files
    ]
    return {
        "dataset": dataset,
        "bucket": bucket,
        "expires_in": URL_EXPIRY_SECONDS,
        "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uploads": uploads,
        "complete": f"/v1/datasets/{dataset}/uploads/complete",
    }


# ---------------------------------------------------------------- finishing multipart uploads


def _raise_upload_error(error: ClientError, path: str) -> NoReturn:
    code = aws.error_code(error)
    if code == "NoSuchUpload":
        raise NotFound(f"no multipart upload with this upload_id for {path[:120]!r} (completed, aborted or never "
                       "started)", code="upload_not_found") from None
    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML", "InvalidRequest"):
        raise BadRequest(f"S3 refused the parts of {path[:120]!r}: {aws.error_message(error) or code}",
                         code="invalid_parts") from None
    raise error


def _parts(parts: Any) -> list[dict[str, Any]]:
    if not isinstance(parts, list) or not 1 <= len(parts) <= S3_MAX_PARTS:
        raise BadRequest(f'parts must be a list of 1 to {S3_MAX_PARTS} {{"part_number", "etag"}} objects',
                         code="invalid_parts")
    checked: dict[int, str] = {}
    for index, part in enumerate(parts):
        where = f"parts[{index}]"
        if not isinstance(part, dict):
            raise BadRequest(f'{where} must be an object like {{"part_number": 1, "etag": "\\"...\\""}}',
                             code="invalid_parts")
        _check_fields(part, PART_FIELDS, where)
        number, etag = part.get("part_number"), part.get("etag")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= S3_MAX_PARTS:
            raise BadRequest(f"{where}.part_number must be an integer from 1 to {S3_MAX_PARTS}, got {number!r}",
                             code="invalid_parts")
        if not isinstance(etag, str) or not 1 <= len(etag) <= MAX_ETAG_CHARS or not etag.isprintable():
            raise BadRequest(f"{where}.etag must be the ETag header S3 answered the part's PUT with",
                             code="invalid_parts")
        if number in checked:
            raise BadRequest(f"{where}: part {number} is listed twice", code="invalid_parts")
        checked[number] = etag
    return [{"PartNumber": number, "ETag": checked[number]} for number in sorted(checked)]


def _multipart_target(dataset: str, request: dict[str, Any], allowed: tuple[str, ...]) -> tuple[str, str, str]:
    _check_dataset(dataset)
    _check_fields(request, allowed, "request")
    key = object_key(dataset, request.get("path"))
    return key, request["path"], _check_upload_id(request.get("upload_id"), "upload_id")


def complete_upload(dataset: str, request: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/datasets/{name}/uploads/complete``: S3 joins the uploaded parts into the object."""
    key, path, upload_id = _multipart_target(dataset, request, COMPLETE_FIELDS)
    parts = _parts(request.get("parts"))
    try:
        answer = aws.client("s3").complete_multipart_upload(
            Bucket=get_settings().data_bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except ClientError as error:
        _raise_upload_error(error, path)
    return {"dataset": dataset, "path": path, "key": key, "etag": answer.get("ETag")}


def abort_upload(dataset: str, request: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/datasets/{name}/uploads/abort``: S3 drops the parts uploaded so far."""
    key, path, upload_id = _multipart_target(dataset, request, ABORT_FIELDS)
    try:
        aws.client("s3").abort_multipart_upload(Bucket=get_settings().data_bucket, Key=key, UploadId=upload_id)
    except ClientError as error:
        _raise_upload_error(error, path)
    return {"dataset": dataset, "path": path, "key": key, "aborted": True}
