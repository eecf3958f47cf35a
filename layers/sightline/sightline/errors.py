"""Errors that carry an HTTP status and a stable machine-readable code.

The API turns them into ``{"error": {"code", "message"}}``; other callers treat them as ordinary exceptions.
"""
from __future__ import annotations


class SightlineError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(SightlineError):
    status = 400
    code = "bad_request"


class Unauthorized(SightlineError):
    status = 403
    code = "forbidden"


class NotFound(SightlineError):
    status = 404
    code = "not_found"


class Conflict(SightlineError):
    status = 409
    code = "conflict"


class PayloadTooLarge(SightlineError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(SightlineError):
    status = 415
    code = "unsupported_media_type"
