"""Fixtures of the workflow tests: a model in moto, its dataset registered for real, published events."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from sightline import events, model_registry, templates


@pytest.fixture
def workflow_env(datasets, monkeypatch):
    """Version 1 of model "pets" (classification, dataset "pets") training; ``published`` collects the events."""
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: published.append((detail_type, detail)))
    model, _ = model_registry.create_model(
        name="pets", task="classification", datasets=["pets"], template="mobilenet_v3_small",
        params=templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 3}),
    )
    return SimpleNamespace(
        s3=datasets.resources.s3, table=datasets.resources.table, datasets=datasets, published=published,
        model_id=model["model_id"],
    )


@pytest.fixture
def pets(workflow_env) -> dict:
    """The model's dataset, registered from real uploads: two cats and two dogs."""
    return workflow_env.datasets.classification("pets", {"cat": 5, "dog": 5})
