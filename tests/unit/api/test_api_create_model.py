"""POST /v1/models: validation, the model and version it writes, and starting the training workflow."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sightline import model_registry, workflow
from api_helpers import model_items, request
from support import intercept_aws

VALID = {
    "name": "pet classifier",
    "task": "classification",
    "datasets": ["pets"],
    "template": "mobilenet_v3_small",
    "params": {"epochs": 5},
}


@pytest.fixture
def ready_pets(api_datasets):
    return api_datasets


@pytest.fixture
def validation_only(api_datasets, monkeypatch):
    """For requests that must be refused: the datasets, and no way to create a model or start training."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("a refused request must not create a model or start training")

    monkeypatch.setattr(model_registry, "create_model", must_not_run)
    monkeypatch.setattr(workflow, "start_training", must_not_run)


def post(body=None, **kwargs):
    return request("apigw_post_models.json", body=body, **kwargs)


def assert_rejected(answer, status: int, code: str, message: str | None = None) -> None:
    assert answer.status == status, answer.json
    assert answer.json["error"]["code"] == code
    if message is not None:
        assert answer.json["error"]["message"] == message


def test_fixture_body_creates_a_model_and_starts_training(ready_pets):
    answer = request("apigw_post_models.json")  # the body as the fixture has it
    assert answer.status == 202
    model_id = answer.json["model_id"]
    assert answer.json == {"model_id": model_id, "version": 1, "status": "training"}
    assert answer.headers["location"] == f"/v1/models/{model_id}"

    model = model_registry.get_model(model_id)
    assert model["name"] == "pet classifier" and model["status"] == "training"
    assert model["datasets"] == ["pets"] and model["template"] == "mobilenet_v3_small"
    # null: chosen by the training job from the dataset (README, "The recipe for small data")
    assert model["params"] == {"epochs": 5, "batch_size": None, "learning_rate": 0.001, "image_size": 224,
                               "pretrained": True, "weights_uri": None, "freeze_backbone_epochs": 0,
                               "augment": 0.5, "any_orientation": False, "warmup_epochs": 1.0,
                               "final_learning_rate_fraction": 0.01, "weight_decay": 0.05,
                               "early_stopping_patience": 10, "seed": 0, "gpus": 1, "precision": "auto",
                               "quantize": "none", "quantize_tolerance": 1.0}

    version = model_registry.get_version(model_id, 1)
    execution = ready_pets.sfn.describe_execution(executionArn=version["execution_arn"])
    assert execution["stateMachineArn"] == ready_pets.state_machine_arn
    assert execution["name"] == f"{model_id}-v1"
    assert json.loads(execution["input"]) == {"model_id": model_id, "version": 1}


def test_defaults_fill_template_and_params(ready_pets):
    answer = post({"name": "boxes", "task": "detection", "datasets": ["shapes"]})
    assert answer.status == 202
    model = model_registry.get_model(answer.json["model_id"])
    assert model["template"] == "ssdlite320_mobilenet_v3_large"
    assert model["params"] == {"epochs": None, "batch_size": None, "learning_rate": 0.001, "image_size": None,
                               "pretrained": True, "weights_uri": None, "freeze_backbone_epochs": 0,
                               "augment": 0.5, "any_orientation": False, "warmup_epochs": 1.0,
                               "final_learning_rate_fraction": 0.01, "weight_decay": 0.05,
                               "early_stopping_patience": 10, "seed": 0, "gpus": 1, "precision": "auto", "anchor_min": None,
                               "quantize": "none"}


def test_several_datasets_and_a_padded_name(ready_pets):
    answer = post({**VALID, "name": "  pets  ", "datasets": ["pets", "more-pets"], "template": None})
    assert answer.status == 202
    model = model_registry.get_model(answer.json["model_id"])
    assert model["name"] == "pets" and model["datasets"] == ["pets", "more-pets"]


def test_a_base64_encoded_body_is_read(ready_pets):
    assert post(raw_body=json.dumps(VALID), base64_body=True).status == 202


@pytest.mark.parametrize(
    ("raw_body", "code", "message"),
    [
        ('{"name": "x",', "invalid_json",
         "request body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 14 (char 13)"),
        ("not json at all", "invalid_json", "request body is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[" * 100_000, "invalid_json", "request body is not acceptable JSON: it is nested too deeply"),
        ('{"name": ' + "[" * 100_000, "invalid_json", "request body is not acceptable JSON: it is nested too deeply"),
        ("", "invalid_json", "request body is required: a JSON object"),
        ("[1, 2]", "invalid_json", "request body must be a JSON object"),
        ('"pets"', "invalid_json", "request body must be a JSON object"),
    ],
    ids=["truncated", "not-json", "nested-100k-arrays", "nested-in-an-object", "empty", "array", "string"],
)
def test_bodies_that_are_not_a_json_object(validation_only, raw_body, code, message):
    assert_rejected(post(raw_body=raw_body), 400, code, message)


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"epochs": 3}, "unknown_field",
         "unknown fields: epochs (allowed: name, task, datasets, template, params, retrain_on_new_data, "
         "retraining, promotion)"),
        ({"retrain_on_new_data": "yes"}, "invalid_retrain_on_new_data",
         "retrain_on_new_data must be true or false, got 'yes'"),
        ({"retrain_on_new_data": 1}, "invalid_retrain_on_new_data",
         "retrain_on_new_data must be true or false, got 1"),
        ({"name": None}, "invalid_name", "name must be a string of 1 to 128 characters"),
        ({"name": 7}, "invalid_name", "name must be a string of 1 to 128 characters"),
        ({"name": "   "}, "invalid_name", "name must be 1 to 128 characters, got 0"),
        ({"name": "x" * 129}, "invalid_name", "name must be 1 to 128 characters, got 129"),
        ({"name": "bad\nname"}, "invalid_name", "name must not contain control characters"),
        ({"task": "segmentation"}, "invalid_task",
         "task must be one of classification, detection, multilabel, got 'segmentation'"),
        ({"task": None}, "invalid_task", "task must be one of classification, detection, multilabel, got None"),
        ({"datasets": []}, "invalid_datasets", "datasets must be a non-empty list of dataset names"),
        ({"datasets": "pets"}, "invalid_datasets", "datasets must be a non-empty list of dataset names"),
        ({"datasets": None}, "invalid_datasets", "datasets must be a non-empty list of dataset names"),
        ({"datasets": ["pets", 3]}, "invalid_datasets", "datasets must contain dataset names, got 3"),
        ({"datasets": ["pets", ""]}, "invalid_datasets", "datasets must contain dataset names, got ''"),
        ({"datasets": ["pets", "pets"]}, "invalid_datasets", "datasets lists 'pets' more than once"),
        ({"datasets": [f"d{i}" for i in range(51)]}, "invalid_datasets",
         "datasets lists 51 datasets; at most 50 are allowed"),
        ({"template": "resnet9000"}, "unknown_template",
         "unknown template 'resnet9000' (available: convnext_tiny, convnext_tiny_multilabel, efficientnet_b0, "
         "efficientnet_b0_multilabel, fasterrcnn_mobilenet_v3_large_fpn, fcos_resnet50_fpn, mobilenet_v3_large, "
         "mobilenet_v3_large_multilabel, mobilenet_v3_small, mobilenet_v3_small_multilabel, resnet50, "
         "resnet50_multilabel, retinanet_resnet50_fpn_v2, ssdlite320_mobilenet_v3_large)"),
        ({"template": 5}, "invalid_template", "template must be a template id string, got 5"),
        ({"template": "ssdlite320_mobilenet_v3_large"}, "invalid_template",
         "template ssdlite320_mobilenet_v3_large trains detection models, not classification"),
        ({"params": {"epochs": 0}}, "invalid_params", "params.epochs must be between 1 and 500, got 0"),
        ({"params": {"learning_rate": 2}}, "invalid_params",
         "params.learning_rate must be between 1e-06 and 1.0, got 2.0"),
        ({"params": {"batch_size": 8.5}}, "invalid_params", "params.batch_size must be a whole number, got 8.5"),
        ({"params": {"epochs": "10"}}, "invalid_params", "params.epochs must be a number, got '10'"),
        ({"params": {"epochs": True}}, "invalid_params", "params.epochs must be a number, got True"),
        ({"params": {"momentum": 0.9}}, "invalid_params",
         "unknown params for template mobilenet_v3_small: momentum "
         "(allowed: any_orientation, augment, batch_size, early_stopping_patience, epochs, "
         "final_learning_rate_fraction, freeze_backbone_epochs, gpus, image_size, learning_rate, precision, "
         "pretrained, quantize, quantize_tolerance, seed, "
         "warmup_epochs, weight_decay, weights_uri)"),
        ({"params": {"pretrained": "yes"}}, "invalid_params", "params.pretrained must be true or false, got 'yes'"),
        ({"params": {"weights_uri": "https://example.com/w.pth"}}, "invalid_params",
         "params.weights_uri must be an s3://bucket/key URI or null, got 'https://example.com/w.pth'"),
        ({"params": {"freeze_backbone_epochs": -1}}, "invalid_params",
         "params.freeze_backbone_epochs must be between 0 and 500, got -1"),
        ({"params": [1]}, "invalid_params", "params must be an object"),
        ({"datasets": ["pets", "ghosts"]}, "unknown_dataset", "dataset 'ghosts' does not exist"),
        ({"datasets": ["shapes"]}, "dataset_task_mismatch",
         "dataset 'shapes' has no classification data (it has: detection)"),
    ],
)
def test_each_bad_field_is_a_400_naming_it(validation_only, change, code, message):
    assert_rejected(post({**VALID, **change}), 400, code, message)


def test_a_refused_request_writes_and_starts_nothing(ready_pets):
    for change in ({"name": ""}, {"params": {"epochs": 0}}, {"datasets": ["ghosts"]}, {"datasets": ["broken"]}):
        assert post({**VALID, **change}).status in (400, 409)
    assert model_items(ready_pets.resources.table) == []
    assert ready_pets.sfn.list_executions(stateMachineArn=ready_pets.state_machine_arn)["executions"] == []


@pytest.mark.parametrize("missing", ["name", "task", "datasets"])
def test_required_fields(validation_only, missing):
    body = {k: v for k, v in VALID.items() if k != missing}
    assert post(body).status == 400


def test_a_dataset_that_is_not_ready_is_a_409(validation_only):
    answer = post({**VALID, "datasets": ["pets", "broken"]})
    assert_rejected(
        answer, 409, "dataset_not_ready",
        "dataset 'broken' is not ready (status: invalid); retry when its registration has finished",
    )


def only_model(table) -> tuple[dict, dict]:
    items = model_items(table)
    model_id = next(item["model_id"] for item in items if item["sk"] == "META")
    return model_registry.get_model(model_id), model_registry.get_version(model_id, 1)


def test_a_workflow_that_cannot_start_leaves_the_model_failed_with_the_reason(ready_pets):
    ready_pets.sfn.delete_state_machine(stateMachineArn=ready_pets.state_machine_arn)
    answer = post(VALID)
    assert_rejected(answer, 503, "training_unavailable")
    model, version = only_model(ready_pets.resources.table)
    # The AWS text (the state machine's ARN) stays in the log; the caller gets the request id to quote.
    assert "arn:" not in answer.json["error"]["message"]
    assert answer.json["error"]["reference"] in answer.json["error"]["message"]
    assert model["status"] == "failed" and version["status"] == "failed"
    assert model["failure_reason"].startswith("could not start the training workflow: StateMachineDoesNotExist")
    assert version["failure_reason"] == model["failure_reason"]
    assert version["finished_at"] is not None and version["execution_arn"] is None


def test_an_unreachable_step_functions_also_fails_the_model(ready_pets, monkeypatch):
    def unreachable(start_execution, **_):
        raise EndpointConnectionError(endpoint_url="https://states.us-east-1.amazonaws.com")

    intercept_aws(monkeypatch, "stepfunctions", "start_execution", unreachable)
    assert_rejected(post(VALID), 503, "training_unavailable")
    model, _ = only_model(ready_pets.resources.table)
    assert model["status"] == "failed" and "Could not connect" in model["failure_reason"]


def test_an_execution_that_already_exists_is_the_same_run(ready_pets, monkeypatch):
    """A retried start (same execution name) is not a failure: the ARN follows from the name."""

    def already_started(start_execution, **kwargs):
        raise ClientError(
            {"Error": {"Code": "ExecutionAlreadyExists", "Message": f"Execution Already Exists: {kwargs['name']}"}},
            "StartExecution",
        )

    model, version = model_registry.create_model(
        name="m", task="classification", datasets=["pets"], template="mobilenet_v3_small", params={}
    )
    intercept_aws(monkeypatch, "stepfunctions", "start_execution", already_started)
    arn = workflow.start_training(model["model_id"], 1)
    assert arn == (
        "arn:aws:states:us-east-1:123456789012:execution:sightline-test-train:" f"{model['model_id']}-v1"
    )
    assert model_registry.get_version(model["model_id"], 1)["execution_arn"] == arn
    assert model_registry.get_model(model["model_id"])["status"] == "training"


def test_starting_the_same_version_twice_gives_one_execution(ready_pets):
    model, _ = model_registry.create_model(
        name="m", task="classification", datasets=["pets"], template="mobilenet_v3_small", params={}
    )
    first = workflow.start_training(model["model_id"], 1)
    second = workflow.start_training(model["model_id"], 1)
    assert first == second
    executions = ready_pets.sfn.list_executions(stateMachineArn=ready_pets.state_machine_arn)["executions"]
    assert len(executions) == 1


def test_datasets_are_checked_with_the_real_dataset_store(api_env):
    """Each dataset check of a request, against datasets the real registration wrote, an ``empty`` one among them
    (its only image was deleted again), read through sightline.datasets.store."""
    from sightline import api
    from sightline.datasets import store

    assert api.dataset_store is store
    api_env.datasets.classification("pets")
    api_env.datasets.empty("uploading")
    assert_rejected(post({**VALID, "datasets": ["uploading"]}), 409, "dataset_not_ready")
    assert_rejected(post({**VALID, "datasets": ["ghosts"]}), 400, "unknown_dataset")
    assert_rejected(post({**VALID, "task": "detection", "template": None}), 400, "dataset_task_mismatch")
    assert post(VALID).status == 202
    assert request("apigw_get_dataset.json").json["status"] == "ready"
    assert [d["name"] for d in request("apigw_get_datasets.json").json["datasets"]] == ["pets", "uploading"]
