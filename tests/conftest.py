from __future__ import annotations

import pytest

from support import TEST_ENV, create_resources, load_event  # noqa: F401 - re-exported for older imports


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
