"""Big zips registered in chunks, each chunk in an invocation of its own: archives of 100,000 images stay within
Lambda's 15 minutes and 2 GB.

A zip with more than ``ARCHIVE_CHUNK_MEMBERS`` central-directory entries (5,000 by default), or whose members
expand to more than ``ARCHIVE_CHUNK_BYTES`` (1 GiB), is cut into chunks of consecutive entries within both
limits. The invocation that receives the upload's notification reads only the central directory (its size and
entry count are checked before ``zipfile`` parses it, see ``archive.check_central_directory``), applies the
whole-archive checks, writes the archive's progress item (``PROGRESS#<key>`` in the dataset's partition) and
queues one message per chunk. Each chunk message:

1. gives up if the progress item is gone or belongs to another upload of the key (a newer upload won);
2. parses its entries with ranged reads pinned to the upload's ETag (a replaced object fails them: it gives up),
   stores their images and writes its result document (``.../sources/<sha256(key)>/<etag>/chunk-<n>.json``);
3. adds its number to the progress item's ``done`` set (a redelivered chunk adds nothing new);
4. when that completes the set, writes the archive's SOURCE item (pointing at every chunk's result, with the
   sequencer guard of any registration) and deletes the progress item in one transaction, and names the dataset
   in its outcome so the batch recomputes it.

A failed chunk is retried alone (its message comes back through ``batchItemFailures``); the others stay done.
Until the last chunk is done the dataset keeps what an earlier upload of the key contributed. tar and tar.gz
cannot be read from the middle, so they are not chunked: they register in one invocation, within
``MAX_ARCHIVE_MEMBERS`` entries and ``MAX_ARCHIVE_BYTES``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import IO, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.datasets import archive as archives
from sightline.datasets import queued_work, s3io
from sightline.datasets.issues import IssueLog
from sightline.datasets.paths import DatasetObject
from sightline.datasets.source_records import (
    PARSER_VERSION,
    SOURCE_ISSUE_LIMIT,
    ArtifactImageStore,
    Upload,
    get_source,
    put_source,
    source_item,
    transaction_put,
    upload_time,
)
from sightline.datasets.sources import EMPTY_ARCHIVE, KIND_ARCHIVE, STATUS_INVALID, STATUS_REGISTERED, SourceParse, parse_archive

logger = Logger(child=True)

ARCHIVE_CHUNK = "archive-chunk"
PROGRESS_PREFIX = "PROGRESS#"
SQS_BATCH = 10  # SendMessageBatch's limit


@dataclass(frozen=True)
class ChunkPlan:
    """Where a big zip is cut: ``(start, end)`` central-directory positions of each chunk."""

    ranges: list[tuple[int, int]]


def progress_key(dataset: str, key: str) -> dict[str, str]:
    return {"pk": keys.dataset_pk(dataset), "sk": f"{PROGRESS_PREFIX}{key}"}


def chunk_result_key(dataset: str, key: str, etag: str, chunk: int) -> str:
    """The parse of one chunk, per upload (ETag): chunks of two uploads of the key never share a document."""
    return f"{keys.source_result_key(dataset, key).removesuffix('.json')}/{etag}/chunk-{chunk:05d}.json"


# ---------------------------------------------------------------- the first invocation


def plan(stream: IO[bytes], key: str) -> ChunkPlan | None:
    """The chunks of the zip at ``key`` when it is too big for one invocation, else None. Reads only the central
    directory; raises ``ArchiveRejected`` when the archive as a whole cannot be used."""
    settings = get_settings()
    with archives.open_zip(stream, max_members=settings.max_archive_members) as archive:
        # Whole-archive checks (entry count, expanded size, overlapping entries) over every entry, once.
        archives.list_members(archive, max_members=settings.max_archive_members,
                              max_total_bytes=settings.max_chunked_archive_bytes)
        sizes = [0 if info.is_dir() else info.file_size for info in archive.infolist()]
    if len(sizes) <= settings.archive_chunk_members and sum(sizes) <= settings.archive_chunk_bytes:
        return None
    ranges: list[tuple[int, int]] = []
    start, expanded = 0, 0
    for position, size in enumerate(sizes):
        if position > start and (position - start >= settings.archive_chunk_members
                                 or expanded + size > settings.archive_chunk_bytes):
            ranges.append((start, position))
            start, expanded = position, 0
        expanded += size
    ranges.append((start, len(sizes)))
    return ChunkPlan(ranges)


def start(upload: Upload, obj: DatasetObject, fetched: s3io.FetchedObject, chunk_plan: ChunkPlan,
          sequencer: str | None) -> dict[str, Any]:
    """Record the upload's progress and queue its chunks (those not yet done, when its notification came
    again). The outcome names no dataset: nothing changes in it until the last chunk is done."""
    table = aws.table(get_settings().table_name)
    progress = table.get_item(Key=progress_key(obj.dataset, obj.key), ConsistentRead=True).get("Item")
    count = len(chunk_plan.ranges)
    if progress and progress.get("etag") == fetched.etag and int(progress.get("chunks", 0)) == count:
        done = {int(number) for number in progress.get("done") or ()}
    else:
        done = set()
        item = {
            **progress_key(obj.dataset, obj.key), "key": obj.key, "bucket": upload.bucket, "etag": fetched.etag,
            "size": fetched.size, "chunks": count, "parser_version": PARSER_VERSION, "started_at": aws.utc_now(),
            "uploaded_at": upload_time(fetched.last_modified) or aws.utc_now(),
        }
        if fetched.version_id:
            item["version_id"] = fetched.version_id
        if sequencer:
            item["sequencer"] = sequencer
        if not put_source(item, sequencer):  # the same guard as a SOURCE item: a newer upload's chunks run
            return {"key": obj.key, "dataset": None, "status": "superseded"}
    payloads = [{"dataset": obj.dataset, "key": obj.key, "bucket": upload.bucket, "etag": fetched.etag,
                 "version_id": fetched.version_id, "size": fetched.size, "chunk": number, "chunks": count,
                 "start": first, "end": end}
                for number, (first, end) in enumerate(chunk_plan.ranges) if number not in done]
    _enqueue(payloads)
    logger.info("archive registers in chunks", extra={"key": obj.key, "dataset": obj.dataset, "chunks": count,
                                                      "queued": len(payloads)})
    return {"key": obj.key, "dataset": None, "status": "registering", "kind": KIND_ARCHIVE, "chunks": count,
            "queued": len(payloads)}


def _enqueue(payloads: list[dict[str, Any]]) -> None:
    """One queued message per chunk: on the chunk queue (one chunk per invocation) where there is one, else on
    the register function's own queue."""
    settings = get_settings()
    if not settings.archive_chunk_queue_url:
        for payload in payloads:
            queued_work.enqueue(ARCHIVE_CHUNK, payload)
        return
    for first in range(0, len(payloads), SQS_BATCH):
        entries = [{"Id": str(number), "MessageBody": json.dumps({queued_work.WORK_FIELD: ARCHIVE_CHUNK, **payload},
                                                                    separators=(",", ":"))}
                   for number, payload in enumerate(payloads[first:first + SQS_BATCH])]
        for attempt in range(5):
            failed = aws.client("sqs").send_message_batch(QueueUrl=settings.archive_chunk_queue_url,
                                                          Entries=entries).get("Failed") or []
            if not failed:
                break
            retry = {entry["Id"] for entry in failed}
            entries = [entry for entry in entries if entry["Id"] in retry]
            time.sleep(0.1 * 2**attempt)
        else:
            raise RuntimeError(f"could not queue {len(entries)} archive chunks: {failed[0].get('Message')}")


# ---------------------------------------------------------------- one chunk


@queued_work.handles(ARCHIVE_CHUNK)
def register_chunk(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Register one chunk of a big zip; the last one done registers the archive (its outcome names the dataset)."""
    try:
        dataset, key, etag = str(document["dataset"]), str(document["key"]), str(document["etag"])
        number, count = int(document["chunk"]), int(document["chunks"])
        member_range = (int(document["start"]), int(document["end"]))
    except (KeyError, TypeError, ValueError):
        logger.warning("archive chunk message without its fields; dropped")
        return []
    table = aws.table(get_settings().table_name)
    progress = table.get_item(Key=progress_key(dataset, key), ConsistentRead=True).get("Item")
    if not progress or progress.get("etag") != etag or int(progress.get("chunks", 0)) != count:
        return [{"key": key, "dataset": None, "status": "superseded", "chunk": number}]
    if number not in {int(done) for done in progress.get("done") or ()}:
        try:
            parse = _parse_chunk(document, member_range)
        except ClientError as error:
            if aws.is_condition_failed(error) or aws.is_not_found(error):
                _forget(dataset, key, etag)  # replaced or deleted: this upload will never be whole
                return [{"key": key, "dataset": None, "status": "superseded", "chunk": number}]
            raise
        _write_chunk_result(dataset, key, etag, number, parse)
        try:
            progress = table.update_item(
                Key=progress_key(dataset, key), UpdateExpression="ADD done :chunk",
                ConditionExpression="etag = :etag",
                ExpressionAttributeValues={":chunk": {number}, ":etag": etag}, ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if aws.is_condition_failed(error):
                return [{"key": key, "dataset": None, "status": "superseded", "chunk": number}]
            raise
        logger.info("archive chunk registered", extra={"key": key, "chunk": number, "chunks": count,
                                                       "images": len(parse.images), "issue_count": parse.issues.count})
    if len(progress.get("done") or ()) < count:
        return [{"key": key, "dataset": None, "status": "registering", "chunk": number, "chunks": count}]
    return [_finish(dataset, progress)]


def _parse_chunk(document: dict[str, Any], member_range: tuple[int, int]) -> SourceParse:
    settings = get_settings()
    with ArtifactImageStore(settings.artifact_bucket) as sink, s3io.open_object(
        str(document["bucket"]), str(document["key"]), int(document["size"]), etag=str(document["etag"]),
        version_id=document.get("version_id") or None,
    ) as stream:
        return parse_archive(stream, str(document["key"]), sink=sink, max_pixels=settings.max_image_pixels,
                             max_members=settings.max_archive_members,
                             max_total_bytes=settings.max_chunked_archive_bytes, member_range=member_range)


def _write_chunk_result(dataset: str, key: str, etag: str, number: int, parse: SourceParse) -> None:
    aws.client("s3").put_object(
        Bucket=get_settings().artifact_bucket, Key=chunk_result_key(dataset, key, etag, number),
        Body=json.dumps({**parse.result_document(key, etag), "chunk": number}, separators=(",", ":")).encode(),
        ContentType="application/json",
    )


def _forget(dataset: str, key: str, etag: str) -> None:
    """Delete the progress item of an upload that can no longer complete (unless a newer upload's replaced it)."""
    try:
        aws.table(get_settings().table_name).delete_item(
            Key=progress_key(dataset, key), ConditionExpression="etag = :etag",
            ExpressionAttributeValues={":etag": etag})
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise


def _finish(dataset: str, progress: dict[str, Any]) -> dict[str, Any]:
    """Every chunk is done: the archive's SOURCE item, from the chunks' results, replaces the progress item."""
    key, etag, count = str(progress["key"]), str(progress["etag"]), int(progress["chunks"])
    result_keys = [chunk_result_key(dataset, key, etag, number) for number in range(count)]
    issues = IssueLog(SOURCE_ISSUE_LIMIT)
    images = annotation_files = 0
    for result_key in result_keys:
        result = json.loads(aws.client("s3").get_object(Bucket=get_settings().artifact_bucket,
                                                        Key=result_key)["Body"].read())
        images += len(result.get("images", []))
        annotation_files += len(result.get("annotation_files", []))
        issues.extend(result.get("issues", []), int(result.get("issue_count", 0)))
    if not images and not annotation_files and not issues.count:
        issues.add(key, EMPTY_ARCHIVE)
    status = STATUS_REGISTERED if images or annotation_files else STATUS_INVALID
    sequencer = progress.get("sequencer")
    item = source_item(dataset, key, str(progress["bucket"]), SourceParse(kind=KIND_ARCHIVE), etag=etag,
                       size=int(progress["size"]), version_id=progress.get("version_id"), sequencer=sequencer,
                       uploaded_at=progress.get("uploaded_at"), issues=issues.items, issue_count=issues.count)
    item["status"] = status
    if status == STATUS_REGISTERED:
        item.update(result_keys=result_keys, image_count=images, annotation_file_count=annotation_files,
                    chunk_count=count)
    previous = get_source(dataset, key)
    if not _replace_progress(dataset, key, etag, item, sequencer):
        return {"key": key, "dataset": None, "status": "superseded"}
    _delete_replaced_results(previous, result_keys)
    logger.info("archive registered from its chunks", extra={"key": key, "dataset": dataset, "chunks": count,
                                                            "images": images, "issue_count": issues.count})
    return {"key": key, "dataset": dataset, "status": status, "kind": KIND_ARCHIVE, "images": images,
            "issues": issues.items, "issue_count": issues.count, "chunks": count}


def _replace_progress(dataset: str, key: str, etag: str, item: dict[str, Any], sequencer: str | None) -> bool:
    """Delete the progress item (still this upload's) and put the SOURCE item (no newer upload's recorded), both
    or neither; False when either condition failed (another invocation finished it, or a newer upload won)."""
    table_name = get_settings().table_name
    delete = {"TableName": table_name,
              "Key": {name: {"S": value} for name, value in progress_key(dataset, key).items()},
              "ConditionExpression": "etag = :etag", "ExpressionAttributeValues": {":etag": {"S": etag}}}
    try:
        aws.client("dynamodb").transact_write_items(
            TransactItems=[{"Delete": delete}, transaction_put(table_name, item, sequencer)])
        return True
    except ClientError as error:
        reasons = error.response.get("CancellationReasons") or []
        if aws.error_code(error) != "TransactionCanceledException" or not any(
                reason.get("Code") == "ConditionalCheckFailed" for reason in reasons):
            raise
        if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
            _forget(dataset, key, etag)  # a newer upload of the key is recorded: this one never will be
        return False


def _delete_replaced_results(previous: dict[str, Any] | None, kept: list[str]) -> None:
    """The chunk results of the upload this one replaced (the artifact bucket keeps only what items point at)."""
    stale = [result_key for result_key in (previous or {}).get("result_keys") or () if result_key not in kept]
    for first in range(0, len(stale), 1000):
        aws.client("s3").delete_objects(Bucket=get_settings().artifact_bucket, Delete={
            "Objects": [{"Key": result_key} for result_key in stale[first:first + 1000]], "Quiet": True})
