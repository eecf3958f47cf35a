"""Registration of uploaded objects: each object on its own, then a recompute of its dataset's summary.

Events may arrive twice, late or out of order. Three guards make that safe:

- the source item remembers the ETag it was built from: the same upload is never processed twice;
- S3's ``sequencer`` orders uploads of one key: an older upload never replaces a newer one's source item;
- the summary is written by one recompute of a dataset at a time (``sightline.datasets.summary``).

A batch of notifications (``register_uploads``) costs few calls per object: the SOURCE items of the whole batch
are read in BatchGetItem calls, a loose image or annotation file is read with one GET conditional on the ETag
its event announced (no HEAD: the GET's answer says the object's size, version and time; a 412 means a newer
upload replaced it, a 404 that it is gone), and the SOURCE items are written in transactions of conditional
puts (``source_records.put_sources``). A zip above the chunk threshold is registered in chunks
(``sightline.datasets.fanout``).
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.datasets import archive as archives
from sightline.datasets import fanout, s3io
from sightline.datasets.issues import Issue, make_issue
from sightline.datasets.paths import DatasetObject, FileKind, InvalidKey, classify_file, parse_object_key, unsupported_reason
from sightline.datasets.source_records import (
    SOURCE_ISSUE_LIMIT,
    ArtifactImageStore,
    InlineImageStore,
    Upload,
    get_source,
    get_sources,
    is_current,
    plain_etag,
    put_sources,
    sequencer_order,
    source_item,
    upload_time,
    write_result,
)
from sightline.datasets.sources import (
    KIND_ANNOTATION,
    KIND_ARCHIVE,
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
from sightline.datasets.summary import recompute_dataset

__all__ = ["Upload", "recompute_dataset", "register_object", "register_uploads", "unregister_object"]

logger = Logger(child=True)

# Outcomes after which the dataset's summary is worth recomputing (the object's contribution is stored).
_STORED = ("registered", "invalid", "unchanged")

Submit = Callable[..., "Future[Any]"]


def _outcome(key: str, dataset: str | None, status: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "dataset": dataset, "status": status, **extra}


@dataclass
class _ToWrite:
    """A parsed upload whose SOURCE item is still to be written (with the batch's others)."""

    item: dict[str, Any]
    sequencer: str | None
    outcome: dict[str, Any]


def _check_key(key: str) -> tuple[DatasetObject | None, FileKind | None, list[Issue]]:
    try:
        obj = parse_object_key(key)
    except InvalidKey as error:
        logger.warning("object outside a valid dataset folder", extra={"key": key, "reason": error.reason})
        return None, None, [make_issue(key, error.reason)]
    return obj, classify_file(obj.relative_path), []


def _file_limit(kind: FileKind) -> tuple[str, int]:
    return (KIND_IMAGE, MAX_IMAGE_FILE_BYTES) if kind is FileKind.IMAGE else (KIND_ANNOTATION, MAX_ANNOTATION_FILE_BYTES)


def _fetch(bucket: str, obj: DatasetObject, kind: FileKind, etag: str | None) -> s3io.FetchedObject | None:
    """The object's current version: read whole (images and annotation files, one GET pinned to ``etag``), or
    only described (archives are read later by ranged GETs; ignored files never)."""
    if kind in (FileKind.IMAGE, FileKind.ANNOTATION):
        return s3io.fetch_object(bucket, obj.key, etag=etag, max_bytes=_file_limit(kind)[1])
    return s3io.head_object(bucket, obj.key)


def _parse(bucket: str, obj: DatasetObject, kind: FileKind, fetched: s3io.FetchedObject) -> SourceParse | fanout.ChunkPlan:
    settings = get_settings()
    if kind is FileKind.UNSUPPORTED:
        return rejected_file(KIND_IGNORED, obj.key, unsupported_reason(obj.key))
    if kind is FileKind.ARCHIVE:
        tar = archives.is_tar(obj.key)
        limit = settings.max_archive_bytes if tar else max(settings.max_archive_bytes, settings.max_chunked_archive_bytes)
        if fetched.size > limit:
            return rejected_file(KIND_ARCHIVE, obj.key, f"archive is {fetched.size} bytes, more than the limit of {limit}")
        with s3io.open_object(bucket, obj.key, fetched.size, etag=fetched.etag, version_id=fetched.version_id) as stream:
            if not tar:
                try:
                    plan = fanout.plan(stream, obj.key)
                except archives.ArchiveRejected as rejection:
                    return rejected_file(KIND_ARCHIVE, obj.key, str(rejection))
                if plan is not None:
                    return plan
            with ArtifactImageStore(settings.artifact_bucket) as sink:
                return parse_archive(stream, obj.key, sink=sink, max_pixels=settings.max_image_pixels,
                                     max_members=settings.max_archive_members,
                                     max_total_bytes=settings.max_archive_bytes)
    source_kind, limit = _file_limit(kind)
    if fetched.data is None:
        return rejected_file(source_kind, obj.key, f"file is {fetched.size} bytes, more than the limit of {limit}")
    if kind is FileKind.IMAGE:
        return parse_loose_image(fetched.data, obj.key, sink=InlineImageStore(settings.artifact_bucket),
                                 max_pixels=settings.max_image_pixels)
    return parse_loose_annotation(fetched.data, obj.key)


def _register(upload: Upload, obj: DatasetObject, kind: FileKind, existing: dict[str, Any] | None) -> dict[str, Any] | _ToWrite:
    """One upload up to (not including) the write of its SOURCE item; the outcome when there is nothing to write."""
    etag = plain_etag(upload.etag)
    order = sequencer_order(upload.sequencer)
    if order and existing and existing.get("sequencer", "") > order:
        return _outcome(obj.key, obj.dataset, "superseded")
    if is_current(existing, etag, upload.version_id):
        return _outcome(obj.key, obj.dataset, "unchanged")
    try:
        fetched = _fetch(upload.bucket, obj, kind, etag)
        if fetched is None:
            return _outcome(obj.key, obj.dataset, "missing")
        if (etag and fetched.etag != etag) or (upload.version_id and fetched.version_id
                                               and fetched.version_id != upload.version_id):
            # Only the key's current upload is ever registered: a newer one exists and its own event registers it.
            return _outcome(obj.key, obj.dataset, "superseded")
        if is_current(existing, fetched.etag, fetched.version_id):
            return _outcome(obj.key, obj.dataset, "unchanged")
        parse = _parse(upload.bucket, obj, kind, fetched)
    except s3io.ObjectTooLarge as error:
        source_kind = _file_limit(kind)[0]
        parse, fetched = rejected_file(source_kind, obj.key, str(error)), None
    except ClientError as error:
        # Reads are pinned to the ETag (and version) they were told about: a precondition failure means replaced.
        if aws.is_condition_failed(error):
            return _outcome(obj.key, obj.dataset, "superseded")
        if aws.is_not_found(error):
            return _outcome(obj.key, obj.dataset, "missing")
        raise
    if fetched is None:  # grew past the limit while it was read: refused without knowing its final state
        fetched = s3io.FetchedObject(etag=etag or "", size=0, version_id=upload.version_id, last_modified=None)
    if isinstance(parse, fanout.ChunkPlan):
        return fanout.start(upload, obj, fetched, parse, order)
    if parse.kind in (KIND_ARCHIVE, KIND_ANNOTATION) and parse.status == STATUS_REGISTERED:
        write_result(obj.dataset, obj.key, parse, fetched.etag, order)  # before the item: it never points at nothing
    item = source_item(obj.dataset, obj.key, upload.bucket, parse, etag=fetched.etag, size=fetched.size,
                       version_id=fetched.version_id, sequencer=order, uploaded_at=upload_time(fetched.last_modified))
    outcome = _outcome(obj.key, obj.dataset, parse.status, kind=parse.kind, images=len(parse.images),
                       issues=parse.issues.items[:SOURCE_ISSUE_LIMIT], issue_count=parse.issues.count)
    return _ToWrite(item, order, outcome)


def _inline(function: Callable[..., Any], *args: Any) -> Future[Any]:
    future: Future[Any] = Future()
    try:
        future.set_result(function(*args))
    except BaseException as error:  # noqa: BLE001 - handed to the caller through the future
        future.set_exception(error)
    return future


def register_uploads(uploads: list[Upload], *, submit: Submit | None = None) -> list[dict[str, Any] | BaseException]:
    """Register many uploaded objects (images, archives, annotation files) without recomputing their datasets;
    per upload, in order, its outcome or the error that stopped it (S3/DynamoDB failures; see
    ``aws.is_retryable``). ``submit`` (an executor's) runs the objects at once; without it, one after another.

    An outcome is ``{"key", "dataset", "status", ...}``; status is ``registered`` or ``invalid`` (processed),
    ``unchanged`` (this upload was already registered), ``superseded`` (a newer upload of the key exists),
    ``missing`` (the object is gone), ``registering`` (a big archive whose chunks were queued; its dataset is
    recomputed when the last is done), ``skipped`` (a harmless file such as .DS_Store) or ``rejected`` (outside
    a valid dataset folder; ``issues`` says why). Bad data never raises.
    """
    run = submit or _inline
    results: list[dict[str, Any] | BaseException | None] = [None] * len(uploads)
    checked = [_check_key(upload.key) for upload in uploads]
    wanted = [(obj.dataset, obj.key) for obj, kind, _ in checked if obj is not None and kind is not FileKind.SKIP]
    try:
        known = get_sources(wanted) if wanted else {}
    except Exception:  # noqa: BLE001 - each object reads its own item instead, and fails alone if it must
        logger.exception("batch read of source items failed; reading them one by one")
        known = {}
    first: dict[Upload, int] = {}  # the same notification twice in one batch is registered once
    futures: dict[int, Future[Any]] = {}
    for position, (upload, (obj, kind, issues)) in enumerate(zip(uploads, checked)):
        if obj is None:
            results[position] = _outcome(upload.key, None, "rejected", issues=issues)
        elif kind is FileKind.SKIP:
            results[position] = _outcome(upload.key, obj.dataset, "skipped")
        elif upload not in first:
            first[upload] = position
            futures[position] = run(_register_one, upload, obj, kind, known)
    to_write: list[tuple[int, _ToWrite]] = []
    for position, future in futures.items():
        try:
            result = future.result()
        except BaseException as error:  # noqa: BLE001 - reported for this upload alone
            results[position] = error
            continue
        if isinstance(result, _ToWrite):
            to_write.append((position, result))
        else:
            results[position] = result
    written = put_sources([(pending.item, pending.sequencer) for _, pending in to_write]) if to_write else []
    for (position, pending), result in zip(to_write, written):
        if isinstance(result, BaseException):
            results[position] = result
        elif result:
            results[position] = pending.outcome  # logged by the caller (one line per object)
        else:
            results[position] = _outcome(pending.outcome["key"], pending.outcome["dataset"], "superseded")
    for position, upload in enumerate(uploads):
        if results[position] is None:
            same = results[first[upload]]
            results[position] = dict(same) if isinstance(same, dict) else same
    return results  # type: ignore[return-value]


def _register_one(upload: Upload, obj: DatasetObject, kind: FileKind,
                  known: dict[tuple[str, str], dict[str, Any] | None]) -> dict[str, Any] | _ToWrite:
    pair = (obj.dataset, obj.key)
    existing = known[pair] if pair in known else get_source(*pair)
    return _register(upload, obj, kind, existing)


def register_object(
    bucket: str, key: str, etag: str | None = None, version_id: str | None = None, *, sequencer: str | None = None,
    recompute: bool = True,
) -> dict[str, Any]:
    """Register one uploaded object (``register_uploads``'s outcome) and, with ``recompute``, its dataset (a
    batch of notifications recomputes each dataset once instead: ``sightline.datasets.delivery``). S3/DynamoDB
    failures raise."""
    [result] = register_uploads([Upload(bucket, key, etag, version_id, sequencer)])
    if isinstance(result, BaseException):
        raise result
    return {**result, **_summary(result, recompute)}


def _summary(outcome: dict[str, Any], recompute: bool) -> dict[str, Any]:
    if not recompute or not outcome.get("dataset") or outcome["status"] not in _STORED:
        return {}
    return {"summary": recompute_dataset(outcome["dataset"])}


def unregister_object(bucket: str, key: str, *, sequencer: str | None = None, recompute: bool = True) -> dict[str, Any]:
    """Forget a deleted object's contribution and recompute its dataset (its stored images stay: immutable)."""
    obj, kind, issues = _check_key(key)
    if obj is None:
        return _outcome(key, None, "rejected", issues=issues)
    if kind is FileKind.SKIP:
        return _outcome(key, obj.dataset, "skipped")
    if s3io.head_object(bucket, key) is not None:
        return _outcome(key, obj.dataset, "superseded")  # uploaded again since the deletion
    if get_source(obj.dataset, key) is None:
        return _outcome(key, obj.dataset, "missing")
    order = sequencer_order(sequencer)
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
    outcome = _outcome(key, obj.dataset, "removed")
    if recompute:
        outcome["summary"] = recompute_dataset(obj.dataset)
    return outcome
