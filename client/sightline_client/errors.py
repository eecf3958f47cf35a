"""Typed errors: one class per kind of failure, built from the API's ``{"error": {"code", "message"}}`` body.

Every error is a :class:`SightlineError` with ``status`` (the HTTP status, None when no answer came), ``code`` (the
API's stable machine-readable code), ``message`` (for people) and ``reference`` (on a 5xx, the request id under
which the service's log holds the details).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any


class SightlineError(Exception):
    """Anything the client could not do; ``code`` says what, ``message`` why."""

    default_code = "error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 reference: str | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.reference = reference
        self.body = body

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.reference and self.reference not in self.message:
            text += f" (reference {self.reference})"
        return text


class ValidationError(SightlineError):
    """400: a field, parameter or file is not usable; the message names it."""

    default_code = "bad_request"


class Forbidden(SightlineError):
    """403: no key, a bad key, or a key whose scopes do not allow the route (``scope_forbidden``)."""

    default_code = "forbidden"


class NotFound(SightlineError):
    """404: no such dataset, model, version, evaluation, key or upload."""

    default_code = "not_found"


class Conflict(SightlineError):
    """409: not now (model not ready, version training, dataset in use or still registering, ...)."""

    default_code = "conflict"


class PayloadTooLarge(SightlineError):
    """413: the body or image is over a limit; the message says which."""

    default_code = "payload_too_large"


class UnsupportedMediaType(SightlineError):
    """415: the body is none of the types the route reads."""

    default_code = "unsupported_media_type"


class IdempotencyKeyReused(SightlineError):
    """422: the ``Idempotency-Key`` was used for a different request."""

    default_code = "idempotency_key_reused"


class Throttled(SightlineError):
    """429: over the request rate (``throttled``) or the daily quota (``quota_exceeded``)."""

    default_code = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(SightlineError):
    """5xx: the service failed; ``reference`` finds it in the log."""

    default_code = "internal_error"


class ServiceUnavailable(ServerError):
    """503: training, evaluation or a batch prediction could not be started."""

    default_code = "unavailable"


class ConnectionFailed(SightlineError):
    """No answer: the API (or the storage a URL points to) could not be reached, or did not answer in time."""

    default_code = "connection_error"


class UploadFailed(SightlineError):
    """A file could not be uploaded to its presigned URL (the storage's own error is in the message)."""

    default_code = "upload_failed"


class WaitTimeout(SightlineError):
    """A wait (for a version, a dataset, an evaluation) ran out of time; ``last`` is the last state seen."""

    default_code = "timeout"

    def __init__(self, message: str, *, last: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.last = last


class TrainingFailed(SightlineError):
    """A version ended ``failed``; ``version`` is its last state (``failure_reason`` says why)."""

    default_code = "training_failed"

    def __init__(self, message: str, *, version: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.version = version


class TrainingCancelled(TrainingFailed):
    """A version ended ``cancelled``."""

    default_code = "training_cancelled"


class ConfigurationError(SightlineError):
    """No API URL or key could be found, or the configuration file is not usable."""

    default_code = "not_configured"


BY_STATUS: dict[int, type[SightlineError]] = {
    400: ValidationError,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: IdempotencyKeyReused,
    429: Throttled,
    503: ServiceUnavailable,
}

_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


def error_class(status: int) -> type[SightlineError]:
    if status in BY_STATUS:
        return BY_STATUS[status]
    return ServerError if status >= 500 else SightlineError


def parse_error_body(body: bytes) -> tuple[str | None, str | None, str | None, Any]:
    """(code, message, reference, parsed body) of an error answer: the API's JSON, S3's XML, or plain text."""
    text = body.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            return (_text(error.get("code")), _text(error.get("message")), _text(error.get("reference")), document)
        if isinstance(document.get("message"), str):  # API Gateway's own answers: {"message": "..."}
            return None, document["message"], None, document
    fields = dict(_XML_FIELD.findall(text))
    if fields:  # S3: <Error><Code>SignatureDoesNotMatch</Code><Message>...</Message></Error>
        return fields.get("Code"), fields.get("Message"), None, text
    return None, " ".join(text.split())[:300] or None, None, text


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def from_response(status: int, body: bytes, headers: dict[str, str] | None = None, *,
                  what: str = "request") -> SightlineError:
    """The typed error for an answer ``status`` with ``body``."""
    code, message, reference, document = parse_error_body(body)
    cls = error_class(status)
    message = message or f"{what} answered HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "code": code or (cls.default_code if cls is not SightlineError
                                                                 else f"http_{status}"),
                              "reference": reference, "body": document}
    if cls is Throttled:
        kwargs["retry_after"] = parse_retry_after((headers or {}).get("Retry-After"))
    return cls(message, **kwargs)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
