"""HTTP with retries: the API (with its key and idempotency keys) and presigned storage URLs (with neither).

A request is tried again, after an exponential backoff with jitter or the answer's ``Retry-After``, when:

- the answer is 429 ``throttled`` (API Gateway refuses before anything runs, so any request may be repeated);
- the answer is 5xx, or no answer came (connection refused or reset, timeout), and repeating the request cannot
  do anything twice: GET, PUT, PATCH and DELETE, predictions (they change nothing), and POSTs sent with an
  ``Idempotency-Key`` (every other POST of the API takes one: a repeat gets the first answer again);
- a repeated POST's first try is still being answered (409 ``request_in_progress``).

A 429 ``quota_exceeded`` (the daily quota) and every other 4xx are raised at once.
"""
from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import requests

from sightline_client import __version__
from sightline_client.config import is_loopback
from sightline_client.errors import (
    ConfigurationError,
    ConnectionFailed,
    SightlineError,
    UploadFailed,
    from_response,
    parse_retry_after,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"sightline-client/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait. ``attempts`` counts the first try."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A Retry-After longer than this is not waited out: the error is raised with its ``retry_after``.
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The wait after the ``failures``-th failure (1 and up): half of the exponential step fixed, half random."""
        step = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return step / 2 + rng.uniform(0, step / 2)


NO_RETRIES = RetryPolicy(attempts=1)


@dataclass
class Sender:
    """Sends requests with retries; ``sleep`` and ``rng`` are replaceable (tests wait for nothing)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    session: requests.Session = field(default_factory=requests.Session)

    def send(self, method: str, url: str, *, retryable: bool, what: str, headers: Mapping[str, str] | None = None,
             data: bytes | BinaryIO | None = None, params: Mapping[str, Any] | None = None,
             files: Any = None, form: Mapping[str, str] | None = None, stream: bool = False,
             rewind: Callable[[], None] | None = None) -> requests.Response:
        """The answer to ``method url`` (any status), after the retries the policy and ``retryable`` allow."""
        failures = 0
        while True:
            if failures and rewind is not None:
                rewind()
            try:
                response = self.session.request(method, url, headers=dict(headers or {}), data=form or data,
                                                params=params, files=files, timeout=self.timeout, stream=stream)
            except (requests.ConnectionError, requests.Timeout) as error:
                failures += 1
                if not retryable or failures >= self.retry.attempts:
                    raise ConnectionFailed(f"{what}: no answer from {_origin(url)} after {failures} "
                                           f"{'try' if failures == 1 else 'tries'}: {_reason(error)}{_hint(url)}"
                                           ) from None
                self.sleep(self.retry.backoff(failures, self.rng))
                continue
            wait = self._retry_wait(response, retryable, failures + 1)
            if wait is None:
                return response
            failures += 1
            response.close()
            self.sleep(wait)

    def _retry_wait(self, response: requests.Response, retryable: bool, failures: int) -> float | None:
        """Seconds to wait before trying again, or None to return this answer."""
        status = response.status_code
        if failures >= self.retry.attempts:
            return None
        if status == 429:
            if _code(response) == "quota_exceeded":
                return None
        elif status == 409:
            if not (retryable and _code(response) == "request_in_progress"):
                return None
        elif status not in RETRY_STATUSES or not retryable:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self.retry.backoff(failures, self.rng)
        return retry_after if retry_after <= self.retry.max_retry_after else None


def _code(response: requests.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def _hint(url: str) -> str:
    return " (is the local stack running? `sightline local up`)" if is_loopback(url) else ""


def _origin(url: str) -> str:
    return url.split("?", 1)[0]


def _reason(error: Exception) -> str:
    """The cause in a few words: requests nests urllib3's errors, whose text repeats the whole URL."""
    if isinstance(error, requests.Timeout):
        return "timed out"
    text = str(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0)
    return text if len(text) < 200 else text[:200] + "..."


class Api:
    """The Sightline API at ``base_url`` with ``api_key``: JSON in and out, typed errors."""

    def __init__(self, base_url: str, api_key: str | None, sender: Sender) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.sender = sender

    def call(self, method: str, path: str, *, body: Any = None, data: bytes | None = None,
             content_type: str | None = None, params: Mapping[str, Any] | None = None, files: Any = None,
             form: Mapping[str, str] | None = None, keyed: bool = True, idempotency_key: str | None = None,
             read_only_post: bool = False) -> Any:
        """The JSON answer of ``method path``, or the typed error of a 4xx/5xx answer.

        POSTs carry an ``Idempotency-Key`` (``idempotency_key``, else a new random one, the same for each retry)
        unless ``read_only_post`` says the route changes nothing (predictions, which take none).
        """
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if keyed:
            if not self.api_key:
                raise ConfigurationError("no API key: pass --api-key, set SIGHTLINE_API_KEY or run "
                                         "`sightline configure`")
            headers["x-api-key"] = self.api_key
        if body is not None:
            data = json.dumps(body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        retryable = method != "POST" or read_only_post
        if method == "POST" and not read_only_post:
            headers[IDEMPOTENCY_HEADER] = idempotency_key or uuid.uuid4().hex
            retryable = True
        clean = {name: value for name, value in (params or {}).items() if value is not None}
        response = self.sender.send(method, self.base_url + path, retryable=retryable, headers=headers, data=data,
                                    params=clean, files=files, form=form, what=f"{method} {path}")
        if response.status_code >= 400:
            raise from_response(response.status_code, response.content, response.headers, what=f"{method} {path}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise SightlineError(f"{method} {path} answered {response.status_code} with a body that is not JSON: "
                                 f"{response.text[:200]!r}", status=response.status_code,
                                 code="invalid_response") from None


class Storage:
    """Presigned URLs (uploads, downloads): no API key is ever sent to them."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def put(self, url: str, data: bytes | BinaryIO, headers: Mapping[str, str], *, what: str,
            rewind: Callable[[], None] | None = None) -> str:
        """PUT ``data`` with exactly ``headers``; the ETag S3 answered (without quotes)."""
        response = self.sender.send("PUT", url, retryable=True, headers=headers, data=data, what=what, rewind=rewind)
        if response.status_code >= 300:
            error = from_response(response.status_code, response.content, response.headers, what=what)
            raise UploadFailed(f"{what}: the storage answered HTTP {response.status_code}: {error.code}: "
                               f"{error.message}", status=response.status_code, code="upload_failed")
        return (response.headers.get("ETag") or "").strip('"')

    def download(self, url: str, file: BinaryIO, *, what: str) -> int:
        """Stream ``url`` into ``file``; the bytes written."""
        response = self.sender.send("GET", url, retryable=True, what=what, stream=True)
        with response:
            if response.status_code >= 300:
                error = from_response(response.status_code, response.content, response.headers, what=what)
                raise SightlineError(f"{what}: the storage answered HTTP {response.status_code}: {error.message}",
                                     status=response.status_code, code="download_failed")
            written = 0
            for chunk in response.iter_content(chunk_size=1 << 20):
                file.write(chunk)
                written += len(chunk)
        return written
