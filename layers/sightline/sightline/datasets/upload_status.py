"""Whether given uploads are registered and in the dataset's summary (``POST /v1/datasets/{name}/uploads/status``).

A client that uploaded files (through the presigned URLs, or any S3 client) asks about exactly those files, each
with the ETag S3 answered its upload with, and learns per file whether registration has read that very upload
(``registered`` or ``invalid``, with its issues counted), is still at work on it (``pending``; a big zip shows its
chunks done), or recorded another upload of the key (``superseded``: a newer one replaced it). ``summarized`` says
the dataset's summary (``GET /v1/datasets/{name}``) includes every file asked about: no recompute holds the
dataset or is marked to run again, and the last one read the sources after each file was registered. So a client
waits for exactly its own uploads instead of guessing from quiet time.
"""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from sightline import aws
from sightline.config import get_settings
from sightline.datasets import fanout, store
from sightline.datasets.paths import dataset_name_problem
from sightline.datasets.source_records import get_sources, plain_etag
from sightline.datasets.uploads import MAX_FILES_PER_REQUEST, file_entries, object_key
from sightline.errors import BadRequest

MAX_STATUS_FILES = MAX_FILES_PER_REQUEST  # as many as one uploads request names


def _requested(name: str, request: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(path, data bucket key, ETag or None) of each file asked about, or a 400 naming what is wrong."""
    entries = file_entries(request, '{"path": "cats/1.jpg", "etag": "9b2cf5..."}')
    found: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise BadRequest(f'{where} must be an object like {{"path": "cats/1.jpg"}}', code="invalid_file")
        extra = sorted(set(entry) - {"path", "etag"})
        if extra:
            raise BadRequest(f"{where}: unknown fields {', '.join(extra)} (allowed: path, etag)", code="unknown_field")
        key = object_key(name, entry.get("path"), f"{where}.path")
        etag = entry.get("etag")
        if etag is not None and (not isinstance(etag, str) or not plain_etag(etag)):
            raise BadRequest(f"{where}.etag must be the ETag S3 answered the upload with", code="invalid_etag")
        if key in seen:
            raise BadRequest(f"path {entry['path'][:120]!r} is listed twice", code="duplicate_path")
        seen.add(key)
        found.append((entry["path"], key, plain_etag(etag)))
    return found


def _progress(name: str, keys_: list[str]) -> dict[str, dict[str, Any]]:
    """The progress items of archives still registering in chunks, by key (a few: only big zips have one)."""
    table = aws.table(get_settings().table_name)
    found = {}
    for key in keys_:
        item = table.get_item(Key=fanout.progress_key(name, key), ConsistentRead=True).get("Item")
        if item:
            found[key] = item
    return found


def _current_etag(source: dict[str, Any]) -> str | None:
    """The ETag of the key's object now; None when it is gone."""
    try:
        return plain_etag(aws.client("s3").head_object(Bucket=source["bucket"], Key=source["key"]).get("ETag"))
    except ClientError as error:
        if aws.is_not_found(error):
            return None
        raise


def _file_state(path: str, etag: str | None, source: dict[str, Any] | None,
                progress: dict[str, Any] | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"path": path}
    if source is not None and (etag is None or source.get("etag") == etag):
        answer.update(state=source["status"], etag=source.get("etag"), registered_at=source.get("registered_at"),
                      issue_count=int(source.get("issue_count") or 0))
    elif progress is not None and (etag is None or progress.get("etag") == etag):
        answer.update(state="pending", chunks={"done": len(progress.get("done") or ()),
                                               "total": int(progress.get("chunks") or 0)})
    elif source is not None and _current_etag(source) != etag:
        # Another upload of the key is the object now (or it was deleted): this one will never be read.
        answer.update(state="superseded", etag=source.get("etag"))
    else:
        answer["state"] = "pending"
    return answer


def upload_status(name: str, request: dict[str, Any]) -> dict[str, Any]:
    problem = dataset_name_problem(name)
    if problem:
        raise BadRequest(problem, code="invalid_dataset_name")
    files = _requested(name, request)
    sources = get_sources([(name, key) for _, key, _ in files])
    progress = _progress(name, [key for _, key, etag in files
                                if sources.get((name, key)) is None or sources[(name, key)].get("etag") != etag])
    states = [_file_state(path, etag, sources.get((name, key)), progress.get(key)) for path, key, etag in files]
    registered = [state["registered_at"] for state in states if state.get("registered_at")]
    settled = all(state["state"] != "pending" for state in states)
    meta = store.dataset_meta(name) or {}  # none until the dataset's first recompute
    recomputed = meta.get("sources_read_at")
    idle = "lease_owner" not in meta and not meta.get("dirty")
    summarized = bool(settled and idle and recomputed and all(at <= recomputed for at in registered))
    answer = {"files": states, "summarized": summarized}
    if meta.get("status"):
        answer["status"] = meta["status"]
    return answer


