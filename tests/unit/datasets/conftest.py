"""Fixtures of the dataset tests (``datasets`` and ``aws_resources`` are in ``tests/conftest.py``)."""
from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def settings_env(monkeypatch) -> Callable[..., None]:
    """Override configuration variables for one test."""
    from sightline.config import get_settings

    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    return apply
