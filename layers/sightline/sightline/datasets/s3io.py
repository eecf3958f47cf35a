"""Reads of uploaded objects, pinned to the version an event announced and bounded in size.

Archives are read through ranged GETs instead of being downloaded: memory and /tmp stay small whatever the
archive's size, and a replaced object fails the read (``PreconditionFailed``) instead of mixing two uploads.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from sightline import aws

ARCHIVE_BUFFER_BYTES = 8 * 1024 * 1024  # one ranged GET per 8 MiB of archive read sequentially
_STREAM_CHUNK = 1024 * 1024


class ObjectTooLarge(ValueError):
    """The object is bigger than the caller accepts; the message is the issue's reason."""


def _pin(etag: str | None, version_id: str | None) -> dict[str, str]:
    if version_id:
        return {"VersionId": version_id}
    if etag:
        return {"IfMatch": f'"{etag}"'}
    return {}


class RangedObjectReader(io.RawIOBase):
    """A seekable, read-only file over one S3 object version, fetched with ranged GETs."""

    def __init__(self, bucket: str, key: str, size: int, *, etag: str | None = None, version_id: str | None = None) -> None:
        super().__init__()
        self._bucket = bucket
        self._key = key
        self._size = size
        self._pin = _pin(etag, version_id)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise OSError("negative seek position")
        self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size or len(buffer) == 0:
            return 0
        last = min(self._position + len(buffer), self._size) - 1
        response = aws.client("s3").get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{last}", **self._pin
        )
        data = response["Body"].read()
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_object(bucket: str, key: str, size: int, *, etag: str | None, version_id: str | None) -> io.BufferedReader:
    return io.BufferedReader(RangedObjectReader(bucket, key, size, etag=etag, version_id=version_id), ARCHIVE_BUFFER_BYTES)


def _read_body(body: Any, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := body.read(_STREAM_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise ObjectTooLarge(f"file is larger than the limit of {max_bytes} bytes")
            chunks.append(chunk)
    finally:
        body.close()
    return b"".join(chunks)


def read_object(bucket: str, key: str, *, etag: str | None, version_id: str | None, max_bytes: int) -> bytes:
    """The whole object, streamed and cut off at ``max_bytes`` (``ObjectTooLarge``)."""
    response = aws.client("s3").get_object(Bucket=bucket, Key=key, **_pin(etag, version_id))
    return _read_body(response["Body"], max_bytes)


@dataclass(frozen=True)
class FetchedObject:
    """The key's current version as one GET (or HEAD) saw it; ``data`` is None when it was not read."""

    etag: str
    size: int
    version_id: str | None  # None in an unversioned bucket
    last_modified: datetime | None
    data: bytes | None = None


def _fetched(response: dict[str, Any], data: bytes | None) -> FetchedObject:
    version = response.get("VersionId")
    return FetchedObject(
        etag=str(response.get("ETag") or "").strip().strip('"'),
        size=int(response.get("ContentLength") or 0),
        version_id=version if version and version != "null" else None,
        last_modified=response.get("LastModified"),
        data=data,
    )


def fetch_object(bucket: str, key: str, *, etag: str | None, max_bytes: int) -> FetchedObject:
    """The key's current version in one GET: its bytes with its ETag, size, version and time, instead of a HEAD
    and then a GET. With ``etag`` the GET is conditional on it (``If-Match``): a newer upload fails it with
    ``PreconditionFailed``. An object over ``max_bytes`` by its size is not read (``data`` None); one that
    grows past it while read raises ``ObjectTooLarge``. A missing object raises ``NoSuchKey``."""
    response = aws.client("s3").get_object(Bucket=bucket, Key=key, **_pin(etag, None))
    if int(response.get("ContentLength") or 0) > max_bytes:
        response["Body"].close()
        return _fetched(response, None)
    return _fetched(response, _read_body(response["Body"], max_bytes))


def head_object(bucket: str, key: str) -> FetchedObject | None:
    """The key's current version without its bytes; None when there is none."""
    try:
        return _fetched(aws.client("s3").head_object(Bucket=bucket, Key=key), None)
    except ClientError as error:
        if aws.is_not_found(error):
            return None
        raise
