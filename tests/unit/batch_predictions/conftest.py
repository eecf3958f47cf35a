"""Fixtures of the batch prediction tests: a ready model with the predict tests' tiny real ONNX classifier, the
batch workflow's state machine in moto, and short videos written with PyAV."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_helpers import helpers, write_video

STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:sightline-test-batch-predict"


@pytest.fixture(autouse=True)
def cold_caches():
    """Each test starts as a new container would: no loaded model, no remembered serving version."""
    from sightline.inference import clear_predictor_cache
    from sightline.serving import clear_serving_cache

    clear_predictor_cache()
    clear_serving_cache()
    yield
    clear_predictor_cache()
    clear_serving_cache()


@pytest.fixture
def ready_classifier(aws_resources) -> str:
    """A model serving version 1: the channel classifier (blue, green, red); its id."""
    from sightline import model_registry

    created, _ = model_registry.create_model(name="colours", task="classification", datasets=["colours"],
                                             template="tiny_channel_classifier", params={})
    model_id = created["model_id"]
    artifacts = helpers.upload_version(aws_resources, model_id, 1, helpers.build_classifier(),
                                       helpers.classifier_labels())
    model_registry.update_version(model_id, 1, status="ready", artifacts=artifacts, promoted=True)
    model_registry.update_model(model_id, status="ready", serving_version=1, classes=helpers.CLASSIFIER_CLASSES)
    return model_id


@pytest.fixture
def batch_state_machine(aws_resources, monkeypatch) -> str:
    """The batch prediction state machine's ARN in the environment, with a stand-in machine behind it (moto does
    not run executions here: they stay RUNNING until stopped)."""
    import boto3

    from sightline.config import get_settings

    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}
    arn = boto3.client("stepfunctions").create_state_machine(
        name=STATE_MACHINE_ARN.rsplit(":", 1)[1], definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/sightline-test")["stateMachineArn"]
    monkeypatch.setenv("BATCH_PREDICTION_STATE_MACHINE_ARN", arn)
    get_settings.cache_clear()
    return arn


@pytest.fixture
def video_file(tmp_path) -> Callable[..., Path]:
    def make(name: str = "clip.mp4", **options) -> Path:
        return write_video(tmp_path / name, **options)

    return make
