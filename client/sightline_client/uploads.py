"""``upload_dataset``: local files into a dataset through the API's presigned URLs (the API key is enough).

Files are asked for in batches within the route's limits (1000 files and 2000 URLs an answer), each batch just
before it is sent, so no URL expires while earlier batches upload. A file the answer calls ``single`` is one PUT
with exactly the headers the answer names; a ``multipart`` one is PUT part by part (each part's ETag kept), then
completed, or aborted when anything fails (S3 drops its parts). Parts whose URLs would expire are signed again.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sightline_client.errors import SightlineError, UploadFailed, ValidationError
from sightline_client.http import Api, Storage
from sightline_client.models import Upload, UploadProgress

# The route's limits (docs/openapi.yaml, POST /v1/datasets/{name}/uploads).
MAX_FILES_PER_REQUEST = 1000
MAX_URLS_PER_ANSWER = 2000
SINGLE_PUT_MAX_BYTES = 100 * 1024 * 1024
MIN_PART_BYTES = 64 * 1024 * 1024
# Files registration ignores anyway: left out of a folder's upload instead of being refused by the API.
IGNORED_NAMES = {"thumbs.db", "desktop.ini", "__macosx"}
RESIGN_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative to the dataset, "/" between folders
    source: Path
    size: int


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def collect(path: Path) -> tuple[list[LocalFile], list[tuple[str, str]]]:
    """The files to upload from ``path`` (a folder, walked, or one file) and the (path, why) of those left out."""
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{path}: no such file or folder", code="invalid_path")
    if path.is_file():
        size = path.stat().st_size
        if _ignored(path.name):
            raise ValidationError(f"{path}: hidden and system files are not registered", code="invalid_path")
        if size == 0:
            raise ValidationError(f"{path} is empty", code="invalid_size")
        return [LocalFile(path.name, path, size)], []
    if not path.is_dir():
        raise ValidationError(f"{path} is neither a file nor a folder", code="invalid_path")
    files: list[LocalFile] = []
    skipped: list[tuple[str, str]] = []
    for folder, folders, names in os.walk(path):  # links to folders are not followed (no loops)
        here = Path(folder)
        relative = here.relative_to(path)
        for name in sorted(folders):
            if _ignored(name):
                skipped.append(((relative / name).as_posix() + "/", "hidden or system folder"))
        folders[:] = sorted(name for name in folders if not _ignored(name))
        for name in sorted(names):
            dataset_path = (relative / name).as_posix()
            source = here / name
            if _ignored(name):
                skipped.append((dataset_path, "hidden or system file"))
            elif not source.is_file():
                skipped.append((dataset_path, "not a regular file"))
            elif (size := source.stat().st_size) == 0:
                skipped.append((dataset_path, "empty"))
            else:
                files.append(LocalFile(dataset_path, source, size))
    if not files:
        raise ValidationError(f"{path}: no files to upload" + (f" ({len(skipped)} left out: hidden, system or "
                                                              "empty)" if skipped else ""), code="no_files")
    return files, skipped


def url_count(size: int) -> int:
    """The most URLs the answer holds for a file of ``size`` bytes (parts are 64 MiB or more)."""
    return 1 if size <= SINGLE_PUT_MAX_BYTES else math.ceil(size / MIN_PART_BYTES)


def batches(files: list[LocalFile]) -> Iterator[list[LocalFile]]:
    """``files`` in requests of at most 1000 files and 2000 URLs."""
    batch: list[LocalFile] = []
    urls = 0
    for file in files:
        needed = url_count(file.size)
        if batch and (len(batch) == MAX_FILES_PER_REQUEST or urls + needed > MAX_URLS_PER_ANSWER):
            yield batch
            batch, urls = [], 0
        batch.append(file)
        urls += needed
    if batch:
        yield batch


def _expiry(answer: dict[str, Any], clock: Callable[[], float]) -> float:
    try:
        return datetime.strptime(answer["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except (KeyError, TypeError, ValueError):
        return clock() + float(answer.get("expires_in") or 3600)


class Uploader:
    """Uploads files into dataset ``name``; ``on_progress`` hears of every finished file and part."""

    def __init__(self, api: Api, storage: Storage, name: str, *,
                 on_progress: Callable[[UploadProgress], None] | None = None, workers: int = 4,
                 clock: Callable[[], float] = time.time) -> None:
        self.api, self.storage, self.name = api, storage, name
        self.on_progress = on_progress
        self.workers = max(1, workers)
        self.clock = clock
        self._lock = threading.Lock()
        self._bytes_done = self._files_done = 0
        self._bytes_total = self._files_total = 0
        self.etags: dict[str, str] = {}  # path -> the ETag S3 answered its upload with

    @property
    def _route(self) -> str:
        return f"/v1/datasets/{quote(self.name, safe='')}/uploads"

    def upload(self, files: list[LocalFile]) -> dict[str, str]:
        """Upload ``files``; the ETag of each, by path (what ``uploads/status`` is asked about)."""
        self._bytes_total = sum(file.size for file in files)
        self._files_total = len(files)
        self._report(None)
        for batch in batches(files):
            answer = self.api.call("POST", self._route, body={"files": [{"path": f.path, "size": f.size}
                                                                         for f in batch]})
            uploads = answer.get("uploads") if isinstance(answer, dict) else None
            if not isinstance(uploads, list) or [u.get("path") for u in uploads] != [f.path for f in batch]:
                raise SightlineError(f"POST {self._route} answered uploads for other files than asked",
                                     code="invalid_response")
            expires_at = _expiry(answer, self.clock)
            self._run_batch(list(zip(batch, uploads)), expires_at)
        return dict(self.etags)

    def _run_batch(self, work: list[tuple[LocalFile, Upload]], expires_at: float) -> None:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="sightline-upload") as pool:
            futures = [pool.submit(self._one, file, upload, expires_at) for file, upload in work]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception()), None)
            if failed is not None:
                wait(futures)  # running multipart uploads abort themselves before this raises
                raise failed.exception()  # type: ignore[misc]

    def _one(self, file: LocalFile, upload: Upload, expires_at: float) -> None:
        if file.source.stat().st_size != file.size:
            raise UploadFailed(f"{file.source} changed size while uploading; upload it again", code="file_changed")
        if upload.get("type") == "multipart":
            self._multipart(file, upload, expires_at)
        elif upload.get("type") == "single" and upload.get("url"):
            self._single(file, upload)
        else:
            raise SightlineError(f"the upload answer for {file.path} has no usable type or URL",
                                 code="invalid_response")
        with self._lock:
            self._files_done += 1
        self._report(file.path, 0)

    def _single(self, file: LocalFile, upload: Upload) -> None:
        with open(file.source, "rb") as handle:
            etag = self.storage.put(upload["url"], handle, upload.get("headers") or {}, what=f"uploading {file.path}",
                                    rewind=lambda: handle.seek(0))
        with self._lock:
            self.etags[file.path] = etag
        self._report(file.path, file.size)

    def _multipart(self, file: LocalFile, upload: Upload, expires_at: float) -> None:
        upload_id, part_size = upload["upload_id"], int(upload["part_size"])
        parts = sorted(upload.get("parts") or [], key=lambda part: part["part_number"])
        if sum(int(part["size"]) for part in parts) != file.size:
            raise SightlineError(f"the parts offered for {file.path} do not add up to its {file.size} bytes",
                                 code="invalid_response")
        etags: dict[int, str] = {}
        try:
            for part in parts:
                number = int(part["part_number"])
                if part.get("etag") and not part.get("url"):  # S3 has it already (a resumed upload)
                    etags[number] = part["etag"]
                    self._report(file.path, int(part["size"]))
                    continue
                if self.clock() > expires_at - RESIGN_MARGIN_SECONDS:
                    resigned, expires_at = self._resign(file, upload_id)
                    part = resigned[number]
                with open(file.source, "rb") as handle:
                    handle.seek((number - 1) * part_size)
                    data = handle.read(int(part["size"]))
                etag = self.storage.put(part["url"], data, part.get("headers") or {"Content-Length": str(len(data))},
                                        what=f"uploading part {number} of {file.path}")
                if not etag:
                    raise UploadFailed(f"the storage kept part {number} of {file.path} but answered no ETag")
                etags[number] = etag
                self._report(file.path, len(data))
            completed = self.api.call("POST", f"{self._route}/complete", body={
                "path": file.path, "upload_id": upload_id,
                "parts": [{"part_number": number, "etag": etag} for number, etag in sorted(etags.items())]})
            with self._lock:
                self.etags[file.path] = str((completed or {}).get("etag") or "").strip('"')
        except BaseException:
            try:
                self.api.call("POST", f"{self._route}/abort", body={"path": file.path, "upload_id": upload_id})
            except SightlineError:
                pass  # the original failure is the one to report; S3 drops abandoned parts after 7 days
            raise

    def _resign(self, file: LocalFile, upload_id: str) -> tuple[dict[int, dict[str, Any]], float]:
        answer = self.api.call("POST", self._route, body={"files": [{"path": file.path, "size": file.size,
                                                                     "upload_id": upload_id}]})
        [upload] = answer["uploads"]
        return {int(part["part_number"]): part for part in upload["parts"]}, _expiry(answer, self.clock)

    def _report(self, path: str | None, advanced: int = 0) -> None:
        with self._lock:
            self._bytes_done += advanced
            progress = UploadProgress(self._bytes_done, self._bytes_total, self._files_done, self._files_total, path)
            if self.on_progress is not None:
                self.on_progress(progress)
