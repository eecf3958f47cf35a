"""Read and write objects by URI: ``s3://bucket/key`` through boto3, or a local path (``file://`` or plain).

boto3 honours ``AWS_ENDPOINT_URL``, which is how the local stack points the container at moto. Local paths
let a developer (and the unit tests) run a job against files on disk.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from botocore.exceptions import ClientError

from sightline import aws

class ObjectNotFound(Exception):
    """Nothing is stored at the URI."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def parse_s3(uri: str) -> S3Location:
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return S3Location(parsed.netloc, key)


def local_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI or a plain path."""
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if "://" in uri:
        raise ValueError(f"unsupported URI scheme (use s3://, file:// or a path): {uri!r}")
    return Path(uri)


def join(base: str, name: str) -> str:
    """``name`` under the prefix or folder ``base`` (with or without its trailing slash)."""
    return base.rstrip("/") + "/" + name


def _s3():
    return aws.client("s3")


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        location = parse_s3(uri)
        try:
            return _s3().get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except ClientError as error:
            if aws.is_not_found(error):
                raise ObjectNotFound(uri) from None
            raise
    try:
        return local_path(uri).read_bytes()
    except FileNotFoundError:
        raise ObjectNotFound(uri) from None


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    if is_s3(uri):
        location = parse_s3(uri)
        _s3().put_object(Bucket=location.bucket, Key=location.key, Body=data, ContentType=content_type)
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda handle: handle.write(data))


def download_file(uri: str, destination: Path) -> None:
    """Copy the object at ``uri`` to ``destination``; a partial download never takes the final name."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if is_s3(uri):
        location = parse_s3(uri)
        fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
        os.close(fd)
        try:
            _s3().download_file(location.bucket, location.key, partial)
            os.replace(partial, destination)
        except ClientError as error:
            if aws.is_not_found(error):
                raise ObjectNotFound(uri) from None
            raise
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return
    source = local_path(uri)
    if not source.is_file():
        raise ObjectNotFound(uri)
    with source.open("rb") as reader:
        _atomic_write(destination, lambda handle: shutil.copyfileobj(reader, handle))


def upload_file(source: Path, uri: str, content_type: str = "application/octet-stream") -> None:
    if is_s3(uri):
        location = parse_s3(uri)
        # upload_file switches to multipart for big files (checkpoints) and retries parts.
        _s3().upload_file(str(source), location.bucket, location.key, ExtraArgs={"ContentType": content_type})
        return
    destination = local_path(uri)
    if destination.resolve() == source.resolve():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader:
        _atomic_write(destination, lambda handle: shutil.copyfileobj(reader, handle))


def _atomic_write(path: Path, write) -> None:
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise
