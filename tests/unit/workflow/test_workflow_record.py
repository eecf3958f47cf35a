"""RecordModelVersion and RecordTrainingFailure: version state, promotion rules, failure reasons, events."""
from __future__ import annotations

import json

import pytest

from sightline import model_registry, training_failures, workflow
from sightline.errors import Conflict
from support import LambdaContext, load_event, load_function
from workflow_helpers import ARTIFACTS, add_version, record, train, write_outputs


def event_types(env) -> list[tuple[str, int]]:
    return [(detail_type, detail["version"]) for detail_type, detail in env.published]


# ---------------------------------------------------------------- record_version


def test_the_first_version_is_recorded_and_promoted(workflow_env):
    model_id = workflow_env.model_id
    answer = train(workflow_env, 1, 0.875)
    assert answer == {"model_id": model_id, "version": 1, "status": "ready", "promoted": True}

    version = model_registry.get_version(model_id, 1)
    assert version["status"] == "ready" and version["promoted"] is True
    assert version["metrics"]["accuracy"] == 0.875 and version["metrics"]["primary_metric"] == "accuracy"
    assert version["job_id"] == f"job-{model_id}-1"
    assert version["finished_at"] is not None and version["classes"] == ["cat", "dog"]
    prefix = f"s3://{ARTIFACTS}"
    assert version["artifacts"] == {
        "model": f"{prefix}/models/{model_id}/v1/model.onnx",
        "labels": f"{prefix}/models/{model_id}/v1/labels.json",
        "metrics": f"{prefix}/models/{model_id}/v1/metrics.json",
        "manifest": f"{prefix}/manifests/{model_id}/v1/manifest.json",
        "checkpoint": f"{prefix}/checkpoints/{model_id}/v1/checkpoint.pt",
    }
    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"], model["latest_version"]) == ("ready", 1, 1)
    assert model["classes"] == ["cat", "dog"] and model["failure_reason"] is None
    assert event_types(workflow_env) == [("ModelVersionReady", 1), ("ModelVersionPromoted", 1)]
    assert workflow_env.published[1][1]["previous_version"] is None


def test_a_multilabel_per_class_breakdown_stays_in_metrics_json_not_in_the_version_item(workflow_env):
    # 10,000 classes of per-class numbers would pass DynamoDB's 400 KB item limit.
    per_class = {f"class-{i}": {"average_precision": 0.5, "precision": None, "recall": 1.0, "f1": None,
                                "support": 3} for i in range(10_000)}
    thresholds = {name: 0.4 for name in per_class}
    matrix = [[0] * 10_000 for _ in range(3)]  # a classifier's confusion matrix grows as the square of them
    train(workflow_env, 1, 0.75, primary="mean_average_precision",
          metrics_extra={"task": "multilabel", "f1_micro": 0.5, "threshold": 0.5, "per_class": per_class,
                         "assumed_thresholds": thresholds, "confusion_matrix": {"matrix": matrix}})
    version = model_registry.get_version(workflow_env.model_id, 1)
    assert version["status"] == "ready" and version["promoted"] is True
    assert not {"per_class", "assumed_thresholds", "confusion_matrix"} & set(version["metrics"])
    assert version["metrics"]["mean_average_precision"] == 0.75 and version["metrics"]["f1_micro"] == 0.5
    stored = workflow_env.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{workflow_env.model_id}/v1/metrics.json")
    assert len(json.loads(stored["Body"].read())["per_class"]) == 10_000


def test_the_model_card_is_among_the_artifacts_when_the_job_wrote_one(workflow_env):
    model_id = workflow_env.model_id
    workflow_env.s3.put_object(Bucket=ARTIFACTS, Key=f"models/{model_id}/v1/card.json", Body=b"{}")
    train(workflow_env, 1, 0.5)
    artifacts = model_registry.get_version(model_id, 1)["artifacts"]
    assert artifacts["card"] == f"s3://{ARTIFACTS}/models/{model_id}/v1/card.json"


def test_the_starting_weights_are_on_the_version(workflow_env):
    # The training job says where its starting weights came from; a version trained from scratch says why.
    scratch = {"source": "none", "name": "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
               "reason": "not in the torch cache /opt/torch/hub/checkpoints; downloads are off"}
    train(workflow_env, 1, 0.75, metrics_extra={"weights": scratch})
    version = model_registry.get_version(workflow_env.model_id, 1)
    assert version["weights"] == scratch and version["metrics"]["weights"] == scratch
    train(workflow_env, 2, 0.5)  # a job from before weights were recorded
    assert model_registry.get_version(workflow_env.model_id, 2)["weights"] is None


def test_a_worse_version_is_ready_but_the_serving_version_stays(workflow_env):
    train(workflow_env, 1, 0.9)
    answer = train(workflow_env, 2, 0.8, classes=["cat", "dog", "fox"])
    assert answer["promoted"] is False

    model = model_registry.get_model(workflow_env.model_id)
    assert (model["status"], model["serving_version"], model["latest_version"]) == ("ready", 1, 2)
    assert model["classes"] == ["cat", "dog"]  # the classes of what serves
    version = model_registry.get_version(workflow_env.model_id, 2)
    assert version["status"] == "ready" and version["promoted"] is False
    assert version["classes"] == ["cat", "dog", "fox"]
    assert event_types(workflow_env)[2:] == [("ModelVersionReady", 2), ("ModelVersionRejected", 2)]
    rejected = workflow_env.published[-1][1]
    assert (rejected["metric"], rejected["score"], rejected["serving_version"], rejected["serving_score"]) == (
        "accuracy", 0.8, 1, 0.9)
    assert version["promotion"]["passed"] is False and "below" in version["promotion"]["reason"]


def test_an_equally_good_version_is_promoted(workflow_env):
    train(workflow_env, 1, 0.9)
    assert train(workflow_env, 2, 0.9)["promoted"] is True
    assert model_registry.get_model(workflow_env.model_id)["serving_version"] == 2


def test_a_better_version_is_promoted_and_says_what_it_replaced(workflow_env):
    train(workflow_env, 1, 0.7)
    train(workflow_env, 2, 0.95, classes=["cat", "dog", "fox"])
    model = model_registry.get_model(workflow_env.model_id)
    assert (model["serving_version"], model["classes"]) == (2, ["cat", "dog", "fox"])
    detail_type, detail = workflow_env.published[-1]
    assert detail_type == "ModelVersionPromoted" and detail["previous_version"] == 1 and detail["score"] == 0.95


def test_scores_of_different_metrics_do_not_compare(workflow_env):
    train(workflow_env, 1, 0.5, primary="accuracy")
    assert train(workflow_env, 2, 0.99, primary="map_50")["promoted"] is False
    assert model_registry.get_model(workflow_env.model_id)["serving_version"] == 1


def test_recording_twice_changes_nothing_and_announces_once(workflow_env):
    model_id = workflow_env.model_id
    first = train(workflow_env, 1, 0.8)
    model_before = model_registry.get_model(model_id)
    version_before = model_registry.get_version(model_id, 1)
    assert record(model_id, 1) == first
    model_after = model_registry.get_model(model_id)
    assert {k: v for k, v in model_after.items() if k != "updated_at"} == {
        k: v for k, v in model_before.items() if k != "updated_at"
    }
    assert model_registry.get_version(model_id, 1) == version_before
    assert event_types(workflow_env) == [("ModelVersionReady", 1), ("ModelVersionPromoted", 1)]


def test_a_repeated_worse_record_stays_unpromoted(workflow_env):
    train(workflow_env, 1, 0.9)
    train(workflow_env, 2, 0.1)
    assert record(workflow_env.model_id, 2)["promoted"] is False
    assert model_registry.get_model(workflow_env.model_id)["serving_version"] == 1


def test_a_recorder_that_loses_the_race_decides_again_against_the_winner(workflow_env, monkeypatch):
    """v2 (0.8) and v3 (0.95) finish together over v1 (0.7). v2's recorder decides to promote against v1, but v3's
    recorder promotes first: v2's conditional write must fail and v2, now compared with v3, must not regress it."""
    model_id = workflow_env.model_id
    train(workflow_env, 1, 0.7)
    for version, score in ((2, 0.8), (3, 0.95)):
        add_version(model_id, version)
        write_outputs(workflow_env.s3, model_id, version, score)

    real_set_serving_version = model_registry.set_serving_version
    interleaved = []

    def set_serving_version(target_model_id, version, *, replacing, **fields):
        if version == 2 and not interleaved:
            interleaved.append(True)
            assert record(model_id, 3)["promoted"] is True  # the other recorder runs to the end in between
        return real_set_serving_version(target_model_id, version, replacing=replacing, **fields)

    monkeypatch.setattr(model_registry, "set_serving_version", set_serving_version)
    assert record(model_id, 2)["promoted"] is False
    assert interleaved == [True]
    model = model_registry.get_model(model_id)
    assert (model["serving_version"], model["latest_version"], model["status"]) == (3, 3, "ready")
    assert model_registry.get_version(model_id, 2)["promoted"] is False


def test_conditional_promotion_refuses_a_stale_serving_version(workflow_env):
    """The conditional write itself: promoting against a serving version that is no longer current fails."""
    model_id = workflow_env.model_id
    train(workflow_env, 1, 0.7)
    add_version(model_id, 2)
    assert model_registry.set_serving_version(model_id, 2, replacing=None) is False  # it has one already
    assert model_registry.set_serving_version(model_id, 2, replacing=5) is False
    assert model_registry.get_model(model_id)["serving_version"] == 1
    assert model_registry.set_serving_version(model_id, 2, replacing=1) is True


def test_latest_version_never_moves_back(workflow_env):
    model_id = workflow_env.model_id
    add_version(model_id, 2)
    add_version(model_id, 3)
    write_outputs(workflow_env.s3, model_id, 3, 0.5)
    record(model_id, 3)
    write_outputs(workflow_env.s3, model_id, 2, 0.4)
    record(model_id, 2)
    assert model_registry.get_model(model_id)["latest_version"] == 3


@pytest.mark.parametrize("missing", ["model.onnx", "labels.json", "metrics.json"])
def test_missing_outputs_fail_the_step_and_leave_the_version_training(workflow_env, missing):
    write_outputs(workflow_env.s3, workflow_env.model_id, 1, 0.9, skip=(missing,))
    with pytest.raises(workflow.TrainingOutputInvalid, match=f"finished without {missing}"):
        record(workflow_env.model_id, 1)
    assert model_registry.get_version(workflow_env.model_id, 1)["status"] == "training"
    assert workflow_env.published == []


def test_metrics_without_a_primary_score_fail_the_step(workflow_env):
    write_outputs(workflow_env.s3, workflow_env.model_id, 1, None)
    with pytest.raises(workflow.TrainingOutputInvalid, match="no numeric value for its primary metric 'accuracy'"):
        record(workflow_env.model_id, 1)


def test_a_failed_version_is_not_recorded_as_ready(workflow_env):
    model_registry.update_version(workflow_env.model_id, 1, status="failed", failure_reason="timed out")
    write_outputs(workflow_env.s3, workflow_env.model_id, 1, 0.9)
    with pytest.raises(Conflict, match="already recorded as failed"):
        record(workflow_env.model_id, 1)


def test_boto_cased_job_results_are_read_too(workflow_env):
    write_outputs(workflow_env.s3, workflow_env.model_id, 1, 0.9)
    workflow.record_version({"model_id": workflow_env.model_id, "version": 1,
                             "job": {"jobId": "job-lower", "jobName": "n", "status": "SUCCEEDED"}})
    assert model_registry.get_version(workflow_env.model_id, 1)["job_id"] == "job-lower"


def test_the_record_handler_answers_what_the_state_machine_selects(workflow_env):
    write_outputs(workflow_env.s3, workflow_env.model_id, 1, 0.9)
    event = load_event("sfn_record_version.json")
    event["model_id"] = workflow_env.model_id
    answer = load_function("training_steps").record_version(event, LambdaContext())
    assert (answer["status"], answer["promoted"]) == ("ready", True)
    assert model_registry.get_version(workflow_env.model_id, 1)["job_id"] == event["job"]["JobId"]


# ---------------------------------------------------------------- record_failure


def failure_event(model_id: str, fixture: str) -> dict:
    event = load_event(fixture)
    event["model_id"] = model_id
    return event


def test_a_batch_failure_becomes_a_one_line_reason_on_version_and_model(workflow_env):
    model_id = workflow_env.model_id
    answer = workflow.record_failure(failure_event(model_id, "sfn_record_failure_batch.json"))
    reason = (
        "training job sightline-mdl-0123456789ab-v1 failed: OutOfMemoryError: Container killed due to memory usage "
        "(exit code 137; log stream sightline-training/default/3f9a6c1e2b7d4e8f9a0b1c2d3e4f5a6b)"
    )
    assert answer == {"model_id": model_id, "version": 1, "status": "failed", "reason": reason}
    version = model_registry.get_version(model_id, 1)
    assert (version["status"], version["failure_reason"]) == ("failed", reason)
    assert version["finished_at"] is not None
    model = model_registry.get_model(model_id)
    assert (model["status"], model["failure_reason"]) == ("failed", reason)
    assert workflow_env.published == [("ModelVersionFailed", {"model_id": model_id, "version": 1, "reason": reason})]


def test_a_lambda_failure_reports_its_error_message(workflow_env):
    answer = workflow.record_failure(failure_event(workflow_env.model_id, "sfn_record_failure_lambda.json"))
    assert answer["reason"] == "BadRequest: dataset 'pets' has no images for classification"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"Error": "States.Timeout", "Cause": ""}, "States.Timeout"),
        ({"Error": "States.Timeout"}, "States.Timeout"),
        ({}, "unknown error"),
        ({"Error": "States.Runtime", "Cause": "An error occurred while executing the state 'TrainModel'.\n  Bad."},
         "States.Runtime: An error occurred while executing the state 'TrainModel'. Bad."),
        ({"Error": "States.TaskFailed", "Cause": json.dumps({
            "jobId": "j-1", "jobName": "sightline-m-v1", "status": "FAILED",
            "statusReason": "Host EC2 (instance i-0abc) terminated.",
            "attempts": [{"container": {"exitCode": 1, "logStreamName": "s/1"}}]})},
         "training job sightline-m-v1 failed: Host EC2 (instance i-0abc) terminated. (exit code 1; log stream s/1)"),
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"JobId": "j-2", "Status": "FAILED"})},
         "training job j-2 failed: no reason given"),
        ({"Error": "Lambda.Unknown", "Cause": json.dumps({"errorMessage": "2026-11-22T05:00:00Z abc Task timed out "
                                                                          "after 300.10 seconds"})},
         "Lambda.Unknown: 2026-11-22T05:00:00Z abc Task timed out after 300.10 seconds"),
    ],
)
def test_failure_reasons(error, reason):
    assert training_failures.failure_reason(error) == reason


def test_reasons_are_one_bounded_line():
    reason = training_failures.failure_reason({"Error": "X", "Cause": json.dumps({"errorMessage": "line\n" * 400})})
    assert "\n" not in reason and len(reason) == training_failures.MAX_REASON_CHARS


def test_a_failed_retrain_keeps_the_serving_model_ready(workflow_env):
    model_id = workflow_env.model_id
    train(workflow_env, 1, 0.9)
    add_version(model_id, 2)
    answer = workflow.record_failure(
        {"model_id": model_id, "version": 2, "error": {"Error": "States.Timeout", "Cause": ""}}
    )
    assert answer["status"] == "failed"
    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"]) == ("ready", 1)
    assert model["failure_reason"] == "States.Timeout"  # the last run's story, while v1 keeps serving
    assert model_registry.get_version(model_id, 2)["status"] == "failed"
    assert model_registry.get_version(model_id, 1)["status"] == "ready"

    # The next successful run clears the model's failure reason.
    train(workflow_env, 3, 0.5)
    assert model_registry.get_model(model_id)["failure_reason"] is None


def test_a_ready_version_is_never_turned_failed(workflow_env):
    train(workflow_env, 1, 0.9)
    workflow.record_failure({"model_id": workflow_env.model_id, "version": 1,
                             "error": {"Error": "States.Timeout", "Cause": ""}})
    assert model_registry.get_version(workflow_env.model_id, 1)["status"] == "ready"
    model = model_registry.get_model(workflow_env.model_id)
    assert (model["status"], model["failure_reason"]) == ("ready", None)
    assert [t for t, _ in workflow_env.published] == ["ModelVersionReady", "ModelVersionPromoted"]


def test_recording_a_failure_twice_announces_it_once(workflow_env):
    event = failure_event(workflow_env.model_id, "sfn_record_failure_lambda.json")
    workflow.record_failure(event)
    workflow.record_failure(event)
    assert [t for t, _ in workflow_env.published] == ["ModelVersionFailed"]
    assert model_registry.get_model(workflow_env.model_id)["status"] == "failed"


def test_the_failure_handler(workflow_env):
    event = failure_event(workflow_env.model_id, "sfn_record_failure_batch.json")
    answer = load_function("training_steps").record_failure(event, LambdaContext())
    assert answer["status"] == "failed" and "OutOfMemoryError" in answer["reason"]
