"""Fixtures of the dataset tests, imported by each test module (a conftest.py here would shadow the top-level
``conftest`` that other test packages import ``load_event`` from)."""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Callable

import pytest

_SHARED_MODELS: dict = {}
_LOADER_METHODS = (
    "load_service_model",
    "load_data_with_path",
    "list_available_services",
    "determine_latest_version",
    "list_api_versions",
)


@pytest.fixture(scope="module", autouse=True)
def shared_service_models():
    """Share botocore's parsed service models between boto3 sessions.

    Every test starts from fresh sessions (the top-level fixture resets ``sightline.aws``), and re-reading the same
    model JSON for each new client is most of these tests' run time. Within one session botocore already shares
    these objects, so sharing them across sessions changes nothing but speed.
    """
    from botocore import loaders

    originals = {name: getattr(loaders.Loader, name) for name in _LOADER_METHODS}

    def shared(name, original):
        def load(self, *args, **kwargs):
            key = (name, args, tuple(sorted(kwargs.items())))
            if key not in _SHARED_MODELS:
                _SHARED_MODELS[key] = original(self, *args, **kwargs)
            return _SHARED_MODELS[key]

        return load

    for name, original in originals.items():
        setattr(loaders.Loader, name, shared(name, original))
    yield
    for name, original in originals.items():
        setattr(loaders.Loader, name, original)


@pytest.fixture
def datasets(aws_resources) -> SimpleNamespace:
    """Upload objects to the data bucket and register them as the register function would."""
    from sightline.datasets import registration

    def upload(key: str, data: bytes) -> str:
        return aws_resources.s3.put_object(Bucket=aws_resources.data_bucket, Key=key, Body=data)["ETag"].strip('"')

    def register(key: str, data: bytes | None = None, **kwargs) -> dict:
        etag = upload(key, data) if data is not None else None
        return registration.register_object(aws_resources.data_bucket, key, etag, **kwargs)

    def register_json(key: str, document: object, **kwargs) -> dict:
        return register(key, json.dumps(document).encode(), **kwargs)

    def artifact_exists(key: str) -> bool:
        listing = aws_resources.s3.list_objects_v2(Bucket=aws_resources.artifact_bucket, Prefix=key)
        return any(item["Key"] == key for item in listing.get("Contents", []))

    return SimpleNamespace(
        resources=aws_resources,
        upload=upload,
        register=register,
        register_json=register_json,
        artifact_exists=artifact_exists,
    )


@pytest.fixture
def settings_env(monkeypatch) -> Callable[..., None]:
    """Override configuration variables for one test."""
    from sightline.config import get_settings

    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    return apply
