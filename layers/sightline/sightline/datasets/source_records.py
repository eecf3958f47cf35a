"""The SOURCE item of an uploaded object and the images it stores: what registration writes for each upload,
whether the object came alone, in a batch of notifications, or as the last chunk of a big archive.

The write of a SOURCE item carries the ordering guard of registration: S3's ``sequencer`` orders the uploads of
one key, and an item is only replaced by an upload that is not older than the one it records. Batches write
their items in transactions of up to ``TRANSACTION_ITEMS`` conditional puts; a put whose condition fails is an
upload that was superseded, and only it is left out.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.datasets.images import ImageInfo, make_thumbnail, needs_thumbnail
from sightline.datasets.issues import Issue, fit_issues
from sightline.datasets.sources import KIND_ANNOTATION, KIND_ARCHIVE, KIND_IMAGE, STATUS_REGISTERED, SourceParse

# Bump when parsing rules change: sources registered by an older parser are processed again on their next event.
PARSER_VERSION = 2  # 2: annotation formats beyond COCO, tar archives, Watson archives
SOURCE_ISSUE_LIMIT = 100  # on the source item; the result document in the artifact bucket keeps more
# Room for issues in a table item (400 KB at most): enough for hundreds of ordinary ones, safe for long keys.
SOURCE_ISSUE_BYTES = 100_000
UPLOAD_WORKERS = 8
# Bound the image bytes held in memory while copies are in flight (the function has 2 GB).
MAX_PENDING_UPLOADS = 32
MAX_PENDING_UPLOAD_BYTES = 256 * 1024 * 1024
# DynamoDB: at most 100 actions and 4 MB per transaction, at most 100 keys per BatchGetItem.
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 3_500_000
TRANSACTION_ATTEMPTS = 5
BATCH_GET_KEYS = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def plain_etag(etag: str | None) -> str | None:
    # Events carry the ETag bare, S3's answers quote it.
    return etag.strip().strip('"') if etag else None


def sequencer_order(sequencer: str | None) -> str | None:
    # S3's rule: left-pad the shorter hex string with zeros, then compare as strings.
    return sequencer.strip().upper().rjust(64, "0") if sequencer else None


def upload_time(modified: datetime | None) -> str | None:
    return modified.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if modified else None


# ---------------------------------------------------------------- stored images


def _put_once(bucket: str, key: str, data: bytes, content_type: str) -> None:
    try:
        # Immutable and content-addressed: already there means already right, so only the first write lands.
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise


def _store_image(bucket: str, key: str, data: bytes, info: ImageInfo) -> None:
    _put_once(bucket, key, data, info.content_type)
    if needs_thumbnail(info):
        _put_once(bucket, keys.thumbnail_key(info.sha256), make_thumbnail(data), "image/jpeg")


class InlineImageStore:
    """Copies one loose image to its content-addressed key on the calling thread (already one of many)."""

    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    def store(self, data: bytes, info: ImageInfo) -> str:
        key = keys.image_key(info.sha256, info.extension)
        _store_image(self._bucket, key, data, info)
        return key


class ArtifactImageStore:
    """Copies the valid images of an archive to their content-addressed keys, several at a time, each once."""

    def __init__(self, bucket: str, workers: int = UPLOAD_WORKERS) -> None:
        self._bucket = bucket
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-copy")
        self._pending: dict[Future[None], int] = {}  # copy in flight -> bytes it holds
        self._seen: set[str] = set()

    def store(self, data: bytes, info: ImageInfo) -> str:
        key = keys.image_key(info.sha256, info.extension)
        if key not in self._seen:
            self._seen.add(key)
            self._pending[self._pool.submit(_store_image, self._bucket, key, data, info)] = len(data)
            while len(self._pending) >= MAX_PENDING_UPLOADS or sum(self._pending.values()) > MAX_PENDING_UPLOAD_BYTES:
                self._settle(FIRST_COMPLETED)
        return key

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


# ---------------------------------------------------------------- SOURCE items


@dataclass(frozen=True)
class Upload:
    """One upload of an object as S3 reported it (any of etag, version and sequencer may be missing)."""

    bucket: str
    key: str
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None


def source_key(dataset: str, key: str) -> dict[str, str]:
    return {"pk": keys.dataset_pk(dataset), "sk": keys.source_sk(key)}


def source_item(
    dataset: str, key: str, bucket: str, parse: SourceParse, *, etag: str, size: int, version_id: str | None,
    sequencer: str | None, uploaded_at: str | None, issues: list[Issue] | None = None, issue_count: int | None = None,
) -> dict[str, Any]:
    """The SOURCE item of one upload and what it contributes (``issues`` when not those of ``parse``)."""
    item: dict[str, Any] = {
        **source_key(dataset, key),
        "key": key,
        "bucket": bucket,
        "etag": etag,
        "size": size,
        "kind": parse.kind,
        "status": parse.status,
        "issues": fit_issues((parse.issues.items if issues is None else issues)[:SOURCE_ISSUE_LIMIT],
                             SOURCE_ISSUE_BYTES),
        "issue_count": parse.issues.count if issue_count is None else issue_count,
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
        item["result_key"] = keys.source_result_key(dataset, key)
        item["image_count"] = len(parse.images)
        item["annotation_file_count"] = len(parse.annotation_files)
    return item


def is_current(existing: dict[str, Any] | None, etag: str | None, version_id: str | None) -> bool:
    """Whether ``existing`` records this very upload, parsed by today's parser."""
    return bool(
        existing and etag and existing.get("etag") == etag and existing.get("parser_version") == PARSER_VERSION
        and (not version_id or existing.get("version_id") in (None, version_id))
    )


def write_result(dataset: str, key: str, parse: SourceParse, etag: str, sequencer: str | None) -> None:
    """The parse of an archive or annotation file, in the artifact bucket (too big for a table item)."""
    # The result key is per S3 key, not per upload: check just before writing that no newer upload registered.
    current = get_source(dataset, key)
    if sequencer and current and current.get("sequencer", "") > sequencer:
        return
    aws.client("s3").put_object(
        Bucket=get_settings().artifact_bucket,
        Key=keys.source_result_key(dataset, key),
        Body=json.dumps(parse.result_document(key, etag), separators=(",", ":")).encode(),
        ContentType="application/json",
    )


def get_source(dataset: str, key: str) -> dict[str, Any] | None:
    table = aws.table(get_settings().table_name)
    return table.get_item(Key=source_key(dataset, key), ConsistentRead=True).get("Item")


def get_sources(wanted: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The SOURCE items of ``(dataset, key)`` pairs, strongly consistent, in BatchGetItem calls of 100 keys:
    one call where a GetItem per object took a hundred. Pairs it could not read (throttled) are left out, and
    their callers read them alone."""
    table_name = get_settings().table_name
    found: dict[tuple[str, str], dict[str, Any] | None] = {}
    unique = list(dict.fromkeys(wanted))
    for start in range(0, len(unique), BATCH_GET_KEYS):
        chunk = unique[start:start + BATCH_GET_KEYS]
        request = {table_name: {"Keys": [{name: {"S": value} for name, value in source_key(*pair).items()}
                                         for pair in chunk], "ConsistentRead": True}}
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                response = aws.client("dynamodb").batch_get_item(RequestItems=request)
            except ClientError as error:
                if not aws.is_retryable(error):
                    raise
                break  # these few are read one by one
            for raw in response.get("Responses", {}).get(table_name, []):
                item = {name: _deserializer.deserialize(value) for name, value in raw.items()}
                found[(item["pk"].removeprefix("DATASET#"), item["key"])] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                for pair in chunk:
                    found.setdefault(pair, None)
                break
            time.sleep(0.05 * 2**attempt)
    return found


def put_source(item: dict[str, Any], sequencer: str | None) -> bool:
    """Write the source item unless a newer upload of the key already did; False when it did."""
    table = aws.table(get_settings().table_name)
    try:
        table.put_item(Item=_stamped(item), **_sequencer_guard(sequencer, typed=False))
        return True
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise


def _sequencer_guard(sequencer: str | None, *, typed: bool) -> dict[str, Any]:
    if sequencer is None:
        return {}
    return {
        "ConditionExpression": "attribute_not_exists(sk) OR attribute_not_exists(sequencer) OR sequencer <= :sequencer",
        "ExpressionAttributeValues": {":sequencer": {"S": sequencer} if typed else sequencer},
    }


def _stamped(item: dict[str, Any]) -> dict[str, Any]:
    # registered_at as the item is written, not when it was built (maybe seconds before, in a big batch): a
    # recompute that read the sources later than it has read this item (uploads/status relies on it).
    return {**item, "registered_at": aws.utc_now()} if "registered_at" in item else item


def transaction_put(table_name: str, item: dict[str, Any], sequencer: str | None) -> dict[str, Any]:
    """A transaction's Put of ``item`` with ``put_source``'s guard."""
    item = _stamped(item)
    return {"Put": {"TableName": table_name, "Item": {k: _serializer.serialize(aws.to_dynamo(v)) for k, v in item.items()},
                    **_sequencer_guard(sequencer, typed=True)}}


def _chunks(writes: list[tuple[dict[str, Any], str | None]]) -> list[list[int]]:
    """Positions of ``writes`` grouped into transactions, in order: at most ``TRANSACTION_ITEMS`` items and about
    ``TRANSACTION_BYTES`` each, and a key at most once per transaction (a second write of it starts the next)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    keys_in: set[str] = set()
    size_in = 0
    for position, (item, _) in enumerate(writes):
        size = len(json.dumps(aws.from_dynamo(item), separators=(",", ":"), default=str))
        if current and (item["sk"] in keys_in or len(current) >= TRANSACTION_ITEMS or size_in + size > TRANSACTION_BYTES):
            chunks.append(current)
            current, keys_in, size_in = [], set(), 0
        current.append(position)
        keys_in.add(item["sk"])
        size_in += size
    if current:
        chunks.append(current)
    return chunks


def put_sources(writes: list[tuple[dict[str, Any], str | None]]) -> list[bool | BaseException]:
    """Write many ``(item, sequencer)`` SOURCE items, each with ``put_source``'s guard, in transactions; per
    write: True (written), False (a newer upload of the key is recorded) or the error that stopped it (a
    transaction that is throttled as a whole is written item by item, so only the items that are throttled
    themselves fail)."""
    results: list[bool | BaseException] = [False] * len(writes)
    for chunk in _chunks(writes):
        _write_chunk(writes, chunk, results)
    return results


def _write_chunk(writes: list[tuple[dict[str, Any], str | None]], chunk: list[int],
                 results: list[bool | BaseException]) -> None:
    table_name = get_settings().table_name
    remaining = list(chunk)
    for attempt in range(TRANSACTION_ATTEMPTS):
        if len(remaining) <= 1:
            break
        try:
            aws.client("dynamodb").transact_write_items(
                TransactItems=[transaction_put(table_name, *writes[position]) for position in remaining])
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if aws.error_code(error) == "TransactionCanceledException" and len(reasons) == len(remaining):
                superseded = {position for position, reason in zip(remaining, reasons)
                              if reason.get("Code") == "ConditionalCheckFailed"}
                if superseded:  # the others are tried again at once: only these are older than what is stored
                    remaining = [position for position in remaining if position not in superseded]
                    continue
            if not (aws.is_transaction_lost(error) or aws.is_retryable(error)):
                for position in remaining:
                    results[position] = error
                return
            time.sleep(0.05 * 2**attempt)  # a conflict with another write of one of these items, or throttling
            continue
        for position in remaining:
            results[position] = True
        return
    for position in remaining:  # one left, or the transaction kept failing: one conditional put each
        try:
            results[position] = put_source(*writes[position])
        except Exception as error:  # noqa: BLE001 - handed to the caller of this write
            results[position] = error
