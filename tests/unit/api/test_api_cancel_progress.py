"""POST /v1/models/{id}/versions/{v}/cancel, and the progress a training version shows."""
from __future__ import annotations

import json

import pytest

from sightline import aws, events, model_registry, workflow
from sightline.config import get_settings
from sightline.contract import VersionStatus
from api_helpers import request
from support import intercept_aws


@pytest.fixture
def training(api_datasets, monkeypatch):
    """A model created through the API: version 1 training (its execution started in moto)."""
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: None)
    created = request("apigw_post_models.json")
    assert created.status == 202, created.json
    return created.json["model_id"]


def cancel(model_id: str, version: int = 1):
    return request("apigw_post_model_versions.json", path=f"/v1/models/{model_id}/versions/{version}/cancel",
                   raw_body="")


def get_version(model_id: str, version: int = 1):
    return request("apigw_get_model_version.json", path=f"/v1/models/{model_id}/versions/{version}")


def stopped_executions(monkeypatch) -> list[str]:
    """The executions the code asks Step Functions to stop (passed on to moto)."""
    stopped: list[str] = []

    def stop_execution(real, **kwargs):
        stopped.append(kwargs["executionArn"])
        return real(**kwargs)

    intercept_aws(monkeypatch, "stepfunctions", "stop_execution", stop_execution)
    return stopped


def test_a_cancelled_version_stays_cancelled_whatever_the_run_does_next(training, monkeypatch):
    execution = model_registry.get_version(training, 1)["execution_arn"]
    stopped = stopped_executions(monkeypatch)

    answer = cancel(training)

    assert (answer.status, answer.json) == (200, {"model_id": training, "version": 1, "status": "cancelled"})
    assert stopped == [execution]
    model = model_registry.get_model(training)
    assert (model["status"], model["failure_reason"]) == ("failed", "version 1 was cancelled")
    # The run's own end arrives late: neither success nor failure overwrites the cancellation.
    workflow.record_failure({"model_id": training, "version": 1,
                             "error": {"Error": "States.Aborted", "Cause": "execution stopped"}})
    model_registry.update_version(training, 1, condition="#status = :training",
                                  condition_values={":training": "training"}, status=VersionStatus.READY)
    assert get_version(training).json["status"] == "cancelled"
    assert cancel(training).json["status"] == "cancelled"  # asking again answers the same


def test_a_finished_version_cannot_be_cancelled_and_the_serving_one_keeps_serving(training):
    model_registry.update_version(training, 1, status=VersionStatus.READY, finished_at=aws.utc_now())
    answer = cancel(training)
    assert (answer.status, answer.json["error"]["code"]) == (409, "version_not_training")
    assert cancel(training, 7).status == 404


def test_a_training_version_shows_the_progress_its_job_wrote(training):
    assert get_version(training).json["progress"] is None  # before the first epoch
    document = {"format": "sightline.progress/v1", "epoch": 2, "epochs": 5, "train_loss": 0.4,
                "metric": {"name": "accuracy", "value": 0.8}, "images_per_second": 12.5, "eta_seconds": 30.0,
                "history": [{"epoch": 1}, {"epoch": 2}], "updated_at": "2026-12-01T00:00:00Z"}
    aws.client("s3").put_object(Bucket=get_settings().artifact_bucket, Key=f"models/{training}/v1/progress.json",
                                Body=json.dumps(document).encode())
    assert get_version(training).json["progress"] == document

    model_registry.update_version(training, 1, status=VersionStatus.READY, finished_at=aws.utc_now())
    assert "progress" not in get_version(training).json  # a finished version has metrics instead
