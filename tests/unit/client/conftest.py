"""Fixtures of the client's tests: the fake API (``fake_api``), a client of it whose waits take no time, and
settings isolated from the user's."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fake_api import API_KEY, FakeApi, Sleeps
from sightline_client import RetryPolicy, SightlineClient


@pytest.fixture
def fake():
    api = FakeApi()
    yield api
    api.stop()


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path):
    """No test reads the user's settings, environment or a local stack's key file."""
    monkeypatch.delenv("SIGHTLINE_API_URL", raising=False)
    monkeypatch.delenv("SIGHTLINE_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(fake, sleeps) -> Callable[..., SightlineClient]:
    def make(**kwargs: Any) -> SightlineClient:
        kwargs.setdefault("retry", RetryPolicy(attempts=4, base_delay=1.0, max_delay=8.0))
        client = SightlineClient(fake.url, API_KEY, sleep=sleeps, timeout=5, **kwargs)
        client.clock = sleeps.clock
        return client

    return make


@pytest.fixture
def client(make_client) -> SightlineClient:
    return make_client()
