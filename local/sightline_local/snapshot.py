"""The local stack's memory: a snapshot of its buckets and table in the state dir, restored at the next start.

Layout (``<state dir>/snapshot/``)::

    snapshot.json          format, when written, the stack's API key, every bucket's object versions (metadata and
                           the SHA-256 of each body) and every table's items (DynamoDB JSON), by logical id
    blobs/<2 hex>/<sha256> object bodies, content-addressed: a body that did not change is never written again

Writing is atomic: new bodies first (each a temporary file renamed into place), then ``snapshot.json`` the same way,
then bodies no snapshot names any more are removed. A crash at any point leaves the previous snapshot whole.

**Object versions.** The buckets are versioned and the service pins versions by id: a model version records the S3
version id of its ``model.onnx`` and ``labels.json`` (``integrity``, checked by predict), a dataset's sources and
chunked archives record the version they registered (an event for another version id is registered again). Every
version and delete marker is kept and restored *with its version id*, written into moto's S3 backend in this
process (the local stack's moto server runs here), so every pin still resolves and no S3 notification is sent:
restoring never starts a registration. Items go back with ``BatchWriteItem`` (the table has no stream).

**Work in flight** cannot continue: its processes and queue messages died with the stack. ``settle_interrupted``
rewrites those items before they are restored: a version that was ``training`` is ``failed`` (``INTERRUPTED``;
train again, the serving version is untouched), an evaluation ``queued``/``running`` and a batch prediction
``running`` are ``failed``; a version queued behind a training one and a debounced retraining are dropped.

A snapshot of another format is refused (``SnapshotFormatError``), never read in part nor deleted.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("sightline.local.snapshot")

FORMAT = "sightline.local-snapshot/v1"
DIRECTORY = "snapshot"
MANIFEST = "snapshot.json"
BLOBS = "blobs"
DISCARDED = "snapshot.discarded"
INTERRUPTED = ("the local stack stopped while this ran: its process ended with the stack and cannot continue "
               "after a restart; start it again")
BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem, DynamoDB's limit


class SnapshotError(Exception):
    """The snapshot cannot be read or restored; the message says why and what to do."""


class SnapshotFormatError(SnapshotError):
    """The snapshot was written in a format this version does not read."""


@dataclass
class Summary:
    """What a snapshot holds (``written``/``restored`` figures for the log and the banner)."""

    written_at: str
    objects: int  # keys with at least one version
    versions: int  # object versions and delete markers
    bytes: int  # of the bodies of every version
    items: int
    datasets: int
    models: int
    seconds: float = 0.0
    new_blobs: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"{self.datasets} datasets, {self.models} models, {self.objects} objects ({self.versions} versions, "
                f"{self.bytes / 1e6:.1f} MB), {self.items} table items")


def snapshot_dir(state_dir: Path) -> Path:
    return state_dir / DIRECTORY


# ---------------------------------------------------------------- reading


def load(state_dir: Path) -> dict[str, Any] | None:
    """The snapshot's document, or None when there is none. ``SnapshotFormatError`` for another format,
    ``SnapshotError`` for one that cannot be read (both leave it where it is)."""
    path = snapshot_dir(state_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SnapshotError(f"the local stack's snapshot {path} cannot be read ({error}); move it away to keep it, "
                            "or start with --fresh to discard it") from None
    found = document.get("format") if isinstance(document, dict) else None
    if found != FORMAT:
        raise SnapshotFormatError(
            f"the local stack's snapshot {path} is in format {found!r}, and this Sightline reads {FORMAT!r} only: it "
            f"was left as it is. Start with an older Sightline to use it, move {path.parent} away, or start with "
            "--fresh to set it aside and begin empty")
    return document


def summarise(document: dict[str, Any]) -> Summary:
    versions = [version for bucket in document["buckets"].values() for versions in bucket.values()
                for version in versions]
    items = [item for table in document["tables"].values() for item in table]
    return Summary(
        written_at=document["written_at"],
        objects=sum(len(bucket) for bucket in document["buckets"].values()),
        versions=len(versions),
        bytes=sum(int(version.get("size", 0)) for version in versions),
        items=len(items),
        datasets=sum(1 for item in items if _meta_of(item, "DATASET#")),
        models=sum(1 for item in items if _meta_of(item, "MODEL#")),
    )


def _meta_of(item: dict, prefix: str) -> bool:
    return _s(item, "sk") == "META" and str(_s(item, "pk") or "").startswith(prefix)


def discard(state_dir: Path) -> Path | None:
    """Set the snapshot aside (``<state dir>/snapshot.discarded``, replacing an earlier one): where it went, or
    None when there was none."""
    source = snapshot_dir(state_dir)
    if not source.exists():
        return None
    target = state_dir / DISCARDED
    if target.exists():
        shutil.rmtree(target)
    source.rename(target)
    return target


# ---------------------------------------------------------------- writing


class SnapshotWriter:
    """Writes snapshots of one stack into ``<state dir>/snapshot``, one at a time; remembers the SHA-256 of the
    object versions it has read, so a later snapshot reads only what is new."""

    def __init__(self, state_dir: Path, account_id: str, buckets: dict[str, str], tables: dict[str, str],
                 dynamodb: Any, stack_key: str) -> None:
        self.directory = snapshot_dir(state_dir)
        self.account_id = account_id
        self.buckets = buckets  # logical id -> bucket name
        self.tables = tables  # logical id -> table name
        self.dynamodb = dynamodb
        self.stack_key = stack_key
        self._digests: dict[tuple, str] = {}  # (bucket, key, version id, etag, modified) -> sha256 of the body
        self._lock = threading.Lock()

    def write(self) -> Summary:
        with self._lock:
            started = time.monotonic()
            blobs = self.directory / BLOBS
            blobs.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)  # the bodies and the key are the user's alone, as the api-key file
            new_blobs = 0
            buckets: dict[str, dict[str, list[dict]]] = {}
            for logical_id, name in sorted(self.buckets.items()):
                buckets[logical_id], added = self._bucket(name, blobs)
                new_blobs += added
            tables = {logical_id: list(self._scan(name)) for logical_id, name in sorted(self.tables.items())}
            document = {"format": FORMAT, "written_at": _now(), "stack_key": self.stack_key,
                        "buckets": buckets, "tables": tables}
            write_atomically(self.directory / MANIFEST, json.dumps(document, separators=(",", ":")).encode())
            self._collect_garbage(blobs, document)
            summary = summarise(document)
            summary.seconds = time.monotonic() - started
            summary.new_blobs = new_blobs
            return summary

    def _bucket(self, name: str, blobs: Path) -> tuple[dict[str, list[dict]], int]:
        from moto.s3.models import FakeDeleteMarker, s3_backends

        bucket = s3_backends[self.account_id]["aws"].get_bucket(name)
        objects: dict[str, list[dict]] = {}
        added = 0
        for key_name, versions in sorted(bucket.keys.lists()):
            records = []
            for version in list(versions):
                if isinstance(version, FakeDeleteMarker):
                    records.append({"version_id": version.version_id, "delete_marker": True,
                                    "last_modified": version.last_modified.isoformat()})
                    continue
                record, new = self._object_version(name, version, blobs)
                if record is not None:
                    records.append(record)
                    added += new
            if records:
                objects[key_name] = records
        return objects, added

    def _object_version(self, bucket: str, key: Any, blobs: Path) -> tuple[dict | None, int]:
        identity = (bucket, key.name, key._version_id, key._etag, key.last_modified)
        digest = self._digests.get(identity)
        new = 0
        if digest is None or not _blob_path(blobs, digest).exists():
            try:
                body = key.value
            except ValueError:  # deleted (its buffer closed) while this snapshot was read: it is gone
                return None, 0
            digest = hashlib.sha256(body).hexdigest()
            path = _blob_path(blobs, digest)
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                write_atomically(path, body)
                new = 1
            self._digests[identity] = digest
        record = {
            "version_id": key._version_id,
            "blob": digest,
            "size": key.contentsize,
            "etag": key.etag.strip('"'),
            "last_modified": key.last_modified.isoformat(),
            "metadata": dict(key._metadata),
            "storage_class": key._storage_class,
            "encryption": key.encryption,
            "kms_key_id": key.kms_key_id,
        }
        return {k: v for k, v in record.items() if v is not None}, new

    def _scan(self, table: str) -> Iterable[dict]:
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page.get("Items", []):
                yield _encode_binary(item)

    def _collect_garbage(self, blobs: Path, document: dict) -> None:
        wanted = {version["blob"] for bucket in document["buckets"].values() for versions in bucket.values()
                  for version in versions if "blob" in version}
        for folder in blobs.iterdir():
            for path in folder.iterdir():
                if path.name not in wanted:
                    path.unlink(missing_ok=True)
        self._digests = {identity: digest for identity, digest in self._digests.items() if digest in wanted}


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, or nothing changed: a temporary file beside it, flushed to disk, renamed over it."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _blob_path(blobs: Path, digest: str) -> Path:
    return blobs / digest[:2] / digest


# ---------------------------------------------------------------- restoring


def restore(state_dir: Path, document: dict[str, Any], *, account_id: str, buckets: dict[str, str],
            tables: dict[str, str], dynamodb: Any, apigateway: Any, usage_plan_id: str | None) -> Summary:
    """Put the snapshot's objects (with their version ids) and items back into the freshly deployed stack.

    Nothing is announced: objects go straight into moto's S3 backend (no notification), items through
    BatchWriteItem (the table has no stream). Work that was in flight is settled first (``settle_interrupted``);
    scoped keys get their API Gateway usage keys again, with the values they had, in the new usage plan.
    """
    started = time.monotonic()
    missing = sorted(set(document["buckets"]) - set(buckets)) + sorted(set(document["tables"]) - set(tables))
    if missing:
        raise SnapshotError(f"the snapshot holds {', '.join(missing)}, which the template no longer declares; move "
                            f"{snapshot_dir(state_dir)} away or start with --fresh")
    blobs = snapshot_dir(state_dir) / BLOBS
    for logical_id, objects in document["buckets"].items():
        _restore_bucket(account_id, buckets[logical_id], objects, blobs)
    notes: list[str] = []
    for logical_id, items in document["tables"].items():
        items = [_decode_binary(item) for item in items]
        notes += settle_interrupted(items, _now())
        if usage_plan_id is not None:
            notes += _restore_usage_keys(items, apigateway, usage_plan_id)
        _batch_write(dynamodb, tables[logical_id], items)
    summary = summarise(document)
    summary.seconds = time.monotonic() - started
    summary.notes = notes
    return summary


def _restore_bucket(account_id: str, name: str, objects: dict[str, list[dict]], blobs: Path) -> None:
    from moto.s3.models import FakeDeleteMarker, FakeKey, s3_backends

    bucket = s3_backends[account_id]["aws"].get_bucket(name)
    for key_name, records in objects.items():
        versions: list[Any] = []
        for record in records:
            modified = datetime.fromisoformat(record["last_modified"])
            if record.get("delete_marker"):
                if not versions:
                    continue  # a marker over nothing: S3 would have expired it (ExpiredObjectDeleteMarker)
                marker = FakeDeleteMarker(key=versions[-1])
                marker._version_id = record["version_id"]
                marker.last_modified = modified
                versions.append(marker)
                continue
            path = _blob_path(blobs, record["blob"])
            try:
                body = path.read_bytes()
            except OSError:
                raise SnapshotError(f"the snapshot's body of s3://{name}/{key_name} ({path}) is missing: the "
                                    "snapshot is damaged; move it away or start with --fresh") from None
            key = FakeKey(name=key_name, value=body, account_id=account_id, region_name=bucket.region_name,
                          storage=record.get("storage_class"), etag=record.get("etag"),
                          is_versioned=bucket.is_versioned, version_id=record["version_id"], bucket_name=name,
                          encryption=record.get("encryption"), kms_key_id=record.get("kms_key_id"))
            key.set_metadata(dict(record.get("metadata") or {}))  # into its LowercaseDict, as moto keeps it
            key.last_modified = modified
            versions.append(key)
        if versions:
            bucket.keys.setlist(key_name, versions)


def _batch_write(dynamodb: Any, table: str, items: list[dict]) -> None:
    for first in range(0, len(items), BATCH_WRITE_LIMIT):
        requests = [{"PutRequest": {"Item": item}} for item in items[first:first + BATCH_WRITE_LIMIT]]
        pending: dict[str, list] = {table: requests}
        for attempt in range(10):
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
            time.sleep(0.05 * 2 ** attempt)
        else:
            raise SnapshotError(f"the table {table} did not take {len(pending[table])} of the snapshot's items")


def _restore_usage_keys(items: list[dict], apigateway: Any, usage_plan_id: str) -> list[str]:
    """Scoped keys that are not revoked get their usage key again (same value, so the authorizer's answer still
    names it) in the new stack's usage plan; their items record the new ids."""
    from sightline.usage_plans import SCOPED_USAGE_KEY_PREFIX

    restored = 0
    for item in items:
        if not (str(_s(item, "pk") or "").startswith("APIKEY#") and _s(item, "sk") == "META"):
            continue
        if "revoked_at" in item or not _s(item, "usage_key_value"):
            continue
        created = apigateway.create_api_key(name=SCOPED_USAGE_KEY_PREFIX + _s(item, "key_id"), enabled=True,
                                            value=_s(item, "usage_key_value"))
        apigateway.create_usage_plan_key(usagePlanId=usage_plan_id, keyId=created["id"], keyType="API_KEY")
        item["usage_plan_id"] = {"S": usage_plan_id}
        item["usage_key_id"] = {"S": created["id"]}
        restored += 1
    return [f"{restored} scoped API keys restored"] if restored else []


# ---------------------------------------------------------------- work in flight


def settle_interrupted(items: list[dict], now: str, reason: str = INTERRUPTED) -> list[str]:
    """Rewrite (in place) the items of work that was running when the stack stopped; one note per change.

    A ``training`` version becomes ``failed`` with ``reason``; its model becomes ``failed`` too when it serves no
    version (as a failed run leaves it, ``workflow._mark_failed``), else it keeps serving and carries the reason.
    ``queued``/``running`` evaluations and ``running`` batch predictions become ``failed``. A version queued behind
    a training one (``pending_version``) and a debounced retraining (``retrain_debounce``) are dropped: the stack
    starts no training on its own when it comes back.
    """
    from sightline.contract import BatchPredictionStatus, EvaluationStatus, ModelStatus, VersionStatus

    unfinished_evaluations = (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING)

    notes: list[str] = []
    interrupted_models: set[str] = set()
    for item in items:
        pk, sk = str(_s(item, "pk") or ""), str(_s(item, "sk") or "")
        if pk.startswith("MODEL#") and sk.startswith("VERSION#") and _s(item, "status") == VersionStatus.TRAINING:
            item["status"] = {"S": VersionStatus.FAILED.value}
            item["failure_reason"] = {"S": reason}
            item["finished_at"] = {"S": now}
            interrupted_models.add(pk)
            notes.append(f"model {pk.removeprefix('MODEL#')} version {int(sk.removeprefix('VERSION#'))} was training: "
                         "marked failed")
        elif sk == "META" and pk.startswith("EVALUATION#") and _s(item, "status") in unfinished_evaluations:
            notes.append(f"evaluation {pk.removeprefix('EVALUATION#')} was {_s(item, 'status')}: marked failed")
            item["status"] = {"S": EvaluationStatus.FAILED.value}
            item["failure_reason"] = {"S": reason}
            item["updated_at"] = {"S": now}
        elif sk == "META" and pk.startswith("BATCHPREDICTION#") and _s(item, "status") == BatchPredictionStatus.RUNNING:
            item["status"] = {"S": BatchPredictionStatus.FAILED.value}
            item["failure_reason"] = {"S": reason}
            item["finished_at"] = {"S": now}
            notes.append(f"batch prediction {pk.removeprefix('BATCHPREDICTION#')} was running: marked failed")
    for item in items:
        pk = str(_s(item, "pk") or "")
        if not (pk.startswith("MODEL#") and _s(item, "sk") == "META"):
            continue
        model_id = pk.removeprefix("MODEL#")
        if pk in interrupted_models:
            item["failure_reason"] = {"S": reason}
            item["updated_at"] = {"S": now}
            if "serving_version" not in item or "NULL" in item["serving_version"]:
                item["status"] = {"S": ModelStatus.FAILED.value}
        for name, what in (("pending_version", "the version queued behind the training one"),
                           ("retrain_debounce", "the scheduled (debounced) retraining")):
            if name in item:
                del item[name]
                notes.append(f"model {model_id}: {what} was dropped (request it again)")
    return notes


# ---------------------------------------------------------------- DynamoDB JSON in a JSON file


def _s(item: dict, name: str) -> Any:
    value = item.get(name)
    return value.get("S") if isinstance(value, dict) else None


def _encode_binary(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB JSON as boto3 gives it (bytes for B and BS) made JSON: bytes as base64 text."""
    return {name: _convert(typed, _to_text) for name, typed in item.items()}


def _decode_binary(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _convert(typed, base64.b64decode) for name, typed in item.items()}


def _to_text(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode()


def _convert(typed: dict[str, Any], binary: Any) -> dict[str, Any]:
    """One attribute value with ``binary`` applied to its B and BS values, also inside maps and lists."""
    (kind, value), = typed.items()
    if kind == "B":
        return {kind: binary(value)}
    if kind == "BS":
        return {kind: [binary(each) for each in value]}
    if kind == "M":
        return {kind: {name: _convert(inner, binary) for name, inner in value.items()}}
    if kind == "L":
        return {kind: [_convert(inner, binary) for inner in value]}
    return typed


def _now() -> str:
    from sightline.aws import utc_now

    return utc_now()
