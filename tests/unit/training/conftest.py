from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sightline.contract import JobEnvironment
from sightline_training.weights import ALLOW_DOWNLOAD
from training_helpers import SyntheticDataset, colour_dataset, synthetic_dataset, write_local


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # The CI machine has 2 cores; more threads only contend.
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _no_published_weights(monkeypatch, tmp_path_factory):
    """No training test reaches for published weights (or the network): an empty torch cache, downloads off
    and no deployment prefix, so every template starts from random initialisation unless a test says otherwise."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
    monkeypatch.delenv(ALLOW_DOWNLOAD, raising=False)
    monkeypatch.delenv(JobEnvironment.WEIGHTS_URI, raising=False)


@pytest.fixture
def make_dataset() -> Callable[..., SyntheticDataset]:
    return synthetic_dataset


@pytest.fixture
def local_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic dataset under ``tmp_path/dataset``; the manifest's path. Images are referenced by
    ``uri``: a path relative to the manifest, or ``file://`` URIs when ``file_uris``."""

    def write(task: str, count: int = 12, size: int = 64, file_uris: bool = False, edit=None) -> Path:
        return write_local(synthetic_dataset(task, count, size), tmp_path / "dataset", file_uris, edit)

    return write


@pytest.fixture
def colour_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a :func:`training_helpers.colour_dataset` under ``tmp_path/colours``; the manifest's path."""

    def write(task: str, repeats: int = 5, edit=None) -> Path:
        return write_local(colour_dataset(task, repeats), tmp_path / "colours", edit=edit)

    return write
