"""Python client of the Sightline API: ``from sightline_client import SightlineClient``."""
from __future__ import annotations

__version__ = "0.1.0"

from sightline_client.client import SightlineClient  # noqa: E402
from sightline_client.errors import (  # noqa: E402
    Conflict,
    ConfigurationError,
    ConnectionFailed,
    Forbidden,
    IdempotencyKeyReused,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    SightlineError,
    Throttled,
    TrainingCancelled,
    TrainingFailed,
    UnsupportedMediaType,
    UploadFailed,
    ValidationError,
    WaitTimeout,
)
from sightline_client.http import RetryPolicy  # noqa: E402
from sightline_client.models import RegistrationProgress, UploadProgress, UploadResult  # noqa: E402

__all__ = [
    "Conflict", "ConfigurationError", "ConnectionFailed", "Forbidden", "IdempotencyKeyReused", "NotFound",
    "PayloadTooLarge", "RegistrationProgress", "RetryPolicy", "ServerError", "ServiceUnavailable", "SightlineClient", "SightlineError",
    "Throttled", "TrainingCancelled", "TrainingFailed", "UnsupportedMediaType", "UploadFailed", "UploadProgress",
    "UploadResult", "ValidationError", "WaitTimeout",
]
