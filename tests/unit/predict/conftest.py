"""Fixtures of the predict tests: the tiny ONNX models, models seeded in the moto table, a cold predictor cache."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from predict_helpers import build_classifier, build_detector, upload_version


@pytest.fixture
def classifier_onnx() -> bytes:
    return build_classifier()


@pytest.fixture
def detector_onnx() -> bytes:
    return build_detector()


@pytest.fixture
def seed_model(aws_resources) -> Callable[..., str]:
    """Make a model as the training workflow leaves it (``ready``, ``training`` or ``failed``); returns its id."""
    from sightline import model_registry

    def seed(model: bytes | None, labels: dict, *, status: str = "ready") -> str:
        created, _ = model_registry.create_model(
            name="tiny", task=labels["task"], datasets=["shapes"], template=labels["template"], params={}
        )
        model_id = created["model_id"]
        if status == "ready":
            artifacts = upload_version(aws_resources, model_id, 1, model, labels)
            model_registry.update_version(model_id, 1, status="ready", artifacts=artifacts, promoted=True)
            model_registry.update_model(model_id, status="ready", serving_version=1, classes=labels["classes"])
        elif status == "failed":
            model_registry.update_version(model_id, 1, status="failed", failure_reason="out of memory")
            model_registry.update_model(model_id, status="failed", failure_reason="out of memory")
        return model_id

    return seed


@pytest.fixture(autouse=True)
def fresh_predictor_cache():
    """Each test starts cold (no model, no remembered serving version), as a new Lambda container would."""
    from sightline.inference import clear_predictor_cache
    from sightline.serving import clear_serving_cache

    clear_predictor_cache()
    clear_serving_cache()
    yield
    clear_predictor_cache()
    clear_serving_cache()
