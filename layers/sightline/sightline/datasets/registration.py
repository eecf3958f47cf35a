"""Registration of uploaded objects: one object at a time, then a recompute of its dataset's summary.

Events may arrive twice, late or out of order. Three guards make that safe:

- the source item remembers the ETag it was built from: the same upload is never processed twice;
- S3's ``sequencer`` orders uploads of one key: an older upload never replaces a newer one's source item;
- the summary write is conditional on ``listed_at``: a recompute that started earlier never overwrites one
  that started later.
"""
from __future__ import annotations

import json
from datetime import timezone
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sightline import aws, events, keys
from sightline.config import get_settings
from sightline.datasets import s3io
from sightline.datasets.summary import recompute_dataset
from sightline.datasets.images import ImageInfo, make_thumbnail, needs_thumbnail
from sightline.datasets.issues import Issue, fit_issues, make_issue
from sightline.datasets.paths import DatasetObject, FileKind, InvalidKey, classify_file, parse_object_key, unsupported_reason
from sightline.datasets.sources import (
    KIND_ARCHIVE,
    KIND_ANNOTATION,
    KIND_IGNORED,
    KIND_IMAGE,
    MAX_ANNOTATION_FILE_BYTES,
    MAX_IMAGE_FILE_BYTES,
    STATUS_REGISTERED,
    SourceParse,
    parse_archive,
    parse_loose_annotation,
    parse_loose_image,
    rejected_file,
)

logger = Logger(child=True)

# Bump when parsing rules change: sources registered by an older parser are processed again on their next event.
PARSER_VERSION = 2  # 2: annotation formats beyond COCO, tar archives, Watson archives
SOURCE_ISSUE_LIMIT = 100  # on the source item; the result document in the artifact bucket keeps more
# Room for issues in a table item (400 KB at most): enough for hundreds of ordinary ones, safe for long keys.
SOURCE_ISSUE_BYTES = 100_000
DATASET_ISSUE_BYTES = 200_000
UPLOAD_WORKERS = 8
# Bound the image bytes held in memory while copies are in flight (the function has 2 GB).
MAX_PENDING_UPLOADS = 32
MAX_PENDING_UPLOAD_BYTES = 256 * 1024 * 1024

def _plain_etag(etag: str | None) -> str | None:
    # Events carry the ETag bare, HEAD answers quote it.
    return etag.strip().strip('"') if etag else None


def _sequencer_order(sequencer: str | None) -> str | None:
    # S3's rule: left-pad the shorter hex string with zeros, then compare as strings.
    return sequencer.strip().upper().rjust(64, "0") if sequencer else None


class ArtifactImageStore:
    """Copies valid images to their content-addressed keys, several at a time, each at most once."""

    def __init__(self, bucket: str, workers: int = UPLOAD_WORKERS) -> None:
        self._bucket = bucket
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-copy")
        self._pending: dict[Future[None], int] = {}  # copy in flight -> bytes it holds
        self._seen: set[str] = set()

    def store(self, data: bytes, info: ImageInfo) -> str:
        key = keys.image_key(info.sha256, info.extension)
        if key not in self._seen:
            self._seen.add(key)
            self._pending[self._pool.submit(self._copy, key, data, info)] = len(data)
            while len(self._pending) >= MAX_PENDING_UPLOADS or sum(self._pending.values()) > MAX_PENDING_UPLOAD_BYTES:
                self._settle(FIRST_COMPLETED)
        return key

    def _copy(self, key: str, data: bytes, info: ImageInfo) -> None:
        self._put_once(key, data, info.content_type)
        if needs_thumbnail(info):
            self._put_once(keys.thumbnail_key(info.sha256), make_thumbnail(data), "image/jpeg")

    def _put_once(self, key: str, data: bytes, content_type: str) -> None:
        try:
            # Immutable and content-addressed: already there means already right, so only the first write lands.
            aws.client("s3").put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type,
                                         IfNoneMatch="*")
        except ClientError as error:
            if not aws.is_condition_failed(error):
                raise

    def _settle(self, return_when: str) -> None:
        done, _ = wait(self._pending, return_when=return_when)
        for future in done:
            del self._pending[future]
            future.result()  # a failed copy fails the registration: never record an image that is not stored

    def close(self) -> None:
        try:
            self._settle(ALL_COMPLETED)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ArtifactImageStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _outcome(key: str, dataset: str | None, status: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "dataset": dataset, "status": status, **extra}


def _head(bucket: str, key: str) -> dict[str, Any] | None:
    """The object's current version, or None when it is gone."""
    try:
        return aws.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if aws.is_not_found(error):
            return None
        raise


def _parse(bucket: str, obj: DatasetObject, kind: FileKind, size: int, etag: str, version_id: str | None) -> SourceParse:
    settings = get_settings()
    if kind is FileKind.UNSUPPORTED:
        return rejected_file(KIND_IGNORED, obj.key, unsupported_reason(obj.key))
    if kind is FileKind.ARCHIVE:
        if size > settings.max_archive_bytes:
            return rejected_file(
                KIND_ARCHIVE, obj.key, f"archive is {size} bytes, more than the limit of {settings.max_archive_bytes}"
            )
        with ArtifactImageStore(settings.artifact_bucket) as sink, s3io.open_object(
            bucket, obj.key, size, etag=etag, version_id=version_id
        ) as stream:
            return parse_archive(
                stream,
                obj.key,
                sink=sink,
                max_pixels=settings.max_image_pixels,
                max_members=settings.max_archive_members,
                max_total_bytes=settings.max_archive_bytes,
            )
    source_kind, limit = (KIND_IMAGE, MAX_IMAGE_FILE_BYTES) if kind is FileKind.IMAGE else (KIND_ANNOTATION, MAX_ANNOTATION_FILE_BYTES)
    if size > limit:
        return rejected_file(source_kind, obj.key, f"file is {size} bytes, more than the limit of {limit}")
    try:
        data = s3io.read_object(bucket, obj.key, etag=etag, version_id=version_id, max_bytes=limit)
    except s3io.ObjectTooLarge as error:
        return rejected_file(source_kind, obj.key, str(error))
    if kind is FileKind.IMAGE:
        with ArtifactImageStore(settings.artifact_bucket, workers=1) as sink:
            return parse_loose_image(data, obj.key, sink=sink, max_pixels=settings.max_image_pixels)
    return parse_loose_annotation(data, obj.key)


def _source_item(
    obj: DatasetObject, bucket: str, parse: SourceParse, *, etag: str, size: int, version_id: str | None,
    sequencer: str | None, uploaded_at: str | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": keys.dataset_pk(obj.dataset),
        "sk": keys.source_sk(obj.key),
        "key": obj.key,
        "bucket": bucket,
        "etag": etag,
        "size": size,
        "kind": parse.kind,
        "status": parse.status,
        "issues": fit_issues(parse.issues.items[:SOURCE_ISSUE_LIMIT], SOURCE_ISSUE_BYTES),
        "issue_count": parse.issues.count,
        "parser_version": PARSER_VERSION,
        "registered_at": aws.utc_now(),
        # When the upload was made: of two uploads that annotate one image differently, the later one wins.
        "uploaded_at": uploaded_at or aws.utc_now(),
    }
    if version_id:
        item["version_id"] = version_id
    if sequencer:
        item["sequencer"] = sequencer
    if parse.kind == KIND_IMAGE and parse.images:
        image = parse.images[0]
        item["image"] = {"sha256": image.sha256, "key": image.key, "width": image.width, "height": image.height}
    elif parse.kind in (KIND_ARCHIVE, KIND_ANNOTATION) and parse.status == STATUS_REGISTERED:
        item["result_key"] = keys.source_result_key(obj.dataset, obj.key)
        item["image_count"] = len(parse.images)
        item["annotation_file_count"] = len(parse.annotation_files)
    return item


def _put_source(item: dict[str, Any], sequencer: str | None) -> bool:
    """Write the source item unless a newer upload of the key already did; False when it did."""
    table = aws.table(get_settings().table_name)
    if sequencer is None:
        table.put_item(Item=item)
        return True
    try:
        table.put_item(
            Item=item,
            ConditionExpression="attribute_not_exists(sk) OR attribute_not_exists(sequencer) OR sequencer <= :sequencer",
            ExpressionAttributeValues={":sequencer": sequencer},
        )
        return True
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise


def _write_result(obj: DatasetObject, parse: SourceParse, etag: str, sequencer: str | None) -> None:
    """The parse of an archive or annotation file, in the artifact bucket (too big for a table item)."""
    # The result key is per S3 key, not per upload: check just before writing that no newer upload registered.
    current = _get_source(obj)
    if sequencer and current and current.get("sequencer", "") > sequencer:
        return
    aws.client("s3").put_object(
        Bucket=get_settings().artifact_bucket,
        Key=keys.source_result_key(obj.dataset, obj.key),
        Body=json.dumps(parse.result_document(obj.key, etag), separators=(",", ":")).encode(),
        ContentType="application/json",
    )


def _get_source(obj: DatasetObject) -> dict[str, Any] | None:
    table = aws.table(get_settings().table_name)
    response = table.get_item(Key={"pk": keys.dataset_pk(obj.dataset), "sk": keys.source_sk(obj.key)}, ConsistentRead=True)
    return response.get("Item")


def _check_key(key: str) -> tuple[DatasetObject | None, FileKind | None, list[Issue]]:
    try:
        obj = parse_object_key(key)
    except InvalidKey as error:
        logger.warning("object outside a valid dataset folder", extra={"key": key, "reason": error.reason})
        return None, None, [make_issue(key, error.reason)]
    return obj, classify_file(obj.relative_path), []


def register_object(
    bucket: str, key: str, etag: str | None = None, version_id: str | None = None, *, sequencer: str | None = None,
    recompute: bool = True,
) -> dict[str, Any]:
    """Register one uploaded object (image, archive or annotation file) and, with ``recompute``, its dataset (a
    batch of notifications recomputes each dataset once instead: ``sightline.datasets.delivery``).

    Returns ``{"key", "dataset", "status", ...}``; status is ``registered`` or ``invalid`` (processed), ``unchanged``
    (this upload was already registered), ``superseded`` (a newer upload of the key exists), ``missing`` (the
    object is gone), ``skipped`` (a harmless file such as .DS_Store) or ``rejected`` (outside a valid dataset
    folder; ``issues`` says why). Bad data never raises; S3/DynamoDB failures do (see ``aws.is_retryable``).
    """
    obj, kind, issues = _check_key(key)
    if obj is None:
        return _outcome(key, None, "rejected", issues=issues)
    if kind is FileKind.SKIP:
        return _outcome(key, obj.dataset, "skipped")
    etag = _plain_etag(etag)
    order = _sequencer_order(sequencer)

    existing = _get_source(obj)
    if order and existing and existing.get("sequencer", "") > order:
        return _outcome(key, obj.dataset, "superseded")
    head = _head(bucket, key)
    if head is None:
        return _outcome(key, obj.dataset, "missing")
    current_etag = _plain_etag(head.get("ETag")) or ""
    current_version = head.get("VersionId")
    if (etag and current_etag != etag) or (version_id and current_version and current_version != version_id):
        # Only the key's current upload is ever registered: a newer one exists and its own event registers it.
        return _outcome(key, obj.dataset, "superseded")
    etag = current_etag
    version_id = current_version if current_version and current_version != "null" else None
    if existing and existing.get("etag") == etag and existing.get("parser_version") == PARSER_VERSION:
        return _outcome(key, obj.dataset, "unchanged", **_summary(obj.dataset, recompute))

    size = int(head.get("ContentLength", 0))
    try:
        parse = _parse(bucket, obj, kind, size, etag, version_id)
    except ClientError as error:
        # The read is pinned to the ETag (and version) it was told about: a precondition failure means replaced.
        if aws.is_condition_failed(error):
            return _outcome(key, obj.dataset, "superseded")
        if aws.is_not_found(error):
            return _outcome(key, obj.dataset, "missing")
        raise
    if parse.kind in (KIND_ARCHIVE, KIND_ANNOTATION) and parse.status == STATUS_REGISTERED:
        _write_result(obj, parse, etag, order)  # before the item, so an item never points at nothing
    modified = head.get("LastModified")
    uploaded_at = modified.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if modified else None
    item = _source_item(obj, bucket, parse, etag=etag, size=size, version_id=version_id, sequencer=order,
                        uploaded_at=uploaded_at)
    if not _put_source(item, order):
        return _outcome(key, obj.dataset, "superseded")
    logger.info(
        "registered object",
        extra={"key": key, "dataset": obj.dataset, "kind": parse.kind, "status": parse.status,
               "images": len(parse.images), "issue_count": parse.issues.count},
    )
    return _outcome(
        key,
        obj.dataset,
        parse.status,
        kind=parse.kind,
        images=len(parse.images),
        issues=parse.issues.items[:SOURCE_ISSUE_LIMIT],
        issue_count=parse.issues.count,
        **_summary(obj.dataset, recompute),
    )


def _summary(dataset: str, recompute: bool) -> dict[str, Any]:
    return {"summary": recompute_dataset(dataset)} if recompute else {}


def unregister_object(bucket: str, key: str, *, sequencer: str | None = None, recompute: bool = True) -> dict[str, Any]:
    """Forget a deleted object's contribution and recompute its dataset (its stored images stay: immutable)."""
    obj, kind, issues = _check_key(key)
    if obj is None:
        return _outcome(key, None, "rejected", issues=issues)
    if kind is FileKind.SKIP:
        return _outcome(key, obj.dataset, "skipped")
    if _head(bucket, key) is not None:
        return _outcome(key, obj.dataset, "superseded")  # uploaded again since the deletion
    if _get_source(obj) is None:
        return _outcome(key, obj.dataset, "missing")
    order = _sequencer_order(sequencer)
    table = aws.table(get_settings().table_name)
    request: dict[str, Any] = {"Key": {"pk": keys.dataset_pk(obj.dataset), "sk": keys.source_sk(key)}}
    if order:
        request["ConditionExpression"] = "attribute_not_exists(sequencer) OR sequencer <= :sequencer"
        request["ExpressionAttributeValues"] = {":sequencer": order}
    try:
        table.delete_item(**request)
    except ClientError as error:
        if aws.is_condition_failed(error):
            return _outcome(key, obj.dataset, "superseded")
        raise
    return _outcome(key, obj.dataset, "removed", **_summary(obj.dataset, recompute))
