"""Fixtures of every test folder. Helpers that tests call themselves are in ``support.py``."""
from __future__ import annotations

import pytest

from support import TEST_ENV, Datasets, create_resources

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

    Every test starts from fresh sessions (``aws_env`` resets ``sightline.aws``), and re-reading the same model
    JSON for each new client is most of the moto tests' run time. Within one session botocore already shares these
    objects, so sharing them across sessions changes nothing but speed.
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


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Unit and functional tests never reach a real endpoint: fake credentials, test resource names."""
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    from sightline import aws
    from sightline.config import get_settings

    get_settings.cache_clear()
    aws.reset()
    yield
    get_settings.cache_clear()
    aws.reset()


@pytest.fixture
def aws_resources():
    from moto import mock_aws

    with mock_aws():
        yield create_resources()


@pytest.fixture
def datasets(aws_resources) -> Datasets:
    """Upload objects to the data bucket and register them as the register function would."""
    return Datasets(aws_resources)
