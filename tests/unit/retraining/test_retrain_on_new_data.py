"""RetrainOnNewData: which models a DatasetUpdated event retrains, and why repeats start nothing."""
from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from PIL import Image

from sightline import events, keys, model_registry, retraining, templates, workflow
from sightline.contract import VersionStatus
from sightline.datasets import registration
from sightline_local import synthetic
from support import LambdaContext, create_training_state_machine, intercept_aws, load_event, load_function

PARAMS = templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 2})


@pytest.fixture
def env(aws_resources, monkeypatch):
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: published.append((detail_type, detail)))
    return SimpleNamespace(
        resources=aws_resources, table=aws_resources.table, published=published,
        sfn=boto3.client("stepfunctions"), state_machine_arn=create_training_state_machine(),
    )


def put_dataset(table, name: str, digest: str | None, *, status: str = "ready", tasks: tuple[str, ...] = ("classification",)) -> None:
    """A dataset summary as registration stores it; ``digest`` stands for its training data of every task."""
    table.put_item(Item={
        "pk": keys.dataset_pk(name), "sk": keys.META, "gsi1pk": keys.DATASETS_INDEX_PK, "gsi1sk": name,
        "name": name, "status": status, "classes": {"cat": 3, "dog": 4}, "images": 7, "annotations": 0,
        "tasks": list(tasks), "issues": [], "issue_count": 0, "listed_at": 1,
        "training_digests": {task: digest for task in tasks} if digest else {},
        "created_at": "2026-11-22T05:00:00Z", "updated_at": "2026-11-22T05:00:00Z",
    })


def create_model(datasets: list[str], *, retrain: bool = True, digests: dict | None = None, finished: bool = True,
                 task: str = "classification") -> str:
    """A model whose version 1 was started from ``digests`` (and finished and serves, when ``finished``)."""
    template = templates.DEFAULT_TEMPLATE[task]
    model, _ = model_registry.create_model(
        name="m", task=task, datasets=datasets, template=template,
        params=templates.TEMPLATES[template].defaults() if task != "classification" else PARAMS,
        retrain_on_new_data=retrain, dataset_digests=digests if digests is not None else {d: "v0" for d in datasets},
    )
    if finished:
        finish(model["model_id"], 1)
    return model["model_id"]


def finish(model_id: str, version: int) -> None:
    model_registry.update_version(model_id, version, status=VersionStatus.READY)
    serving = model_registry.get_model(model_id)["serving_version"]
    assert model_registry.set_serving_version(model_id, version, replacing=serving)


def dataset_updated(name: str = "pets") -> dict:
    event = load_event("eventbridge_dataset_updated.json")
    event["detail"]["name"] = name
    return event


def outcomes(result: dict) -> dict[str, str]:
    return {entry["model_id"]: entry["outcome"] for entry in result["models"]}


def latest(model_id: str) -> int:
    return model_registry.get_model(model_id)["latest_version"]


# ---------------------------------------------------------------- which models


def test_new_data_retrains_the_models_that_opted_in_and_train_on_it(env):
    put_dataset(env.table, "pets", "v0")
    put_dataset(env.table, "birds", "v0")
    only_pets = create_model(["pets"])
    pets_and_birds = create_model(["birds", "pets"])
    opted_out = create_model(["pets"], retrain=False)
    other_data = create_model(["birds"])
    put_dataset(env.table, "pets", "v1")  # new pets data registered

    result = retraining.retrain_for_dataset(dataset_updated("pets"))

    assert outcomes(result) == {only_pets: "started", pets_and_birds: "started"}
    assert (latest(opted_out), latest(other_data)) == (1, 1)
    for model_id in (only_pets, pets_and_birds):
        model = model_registry.get_model(model_id)
        assert (model["status"], model["serving_version"], model["latest_version"]) == ("ready", 1, 2)
        version = model_registry.get_version(model_id, 2)
        assert version["status"] == "training"
        assert version["trigger"] == {"type": "dataset_updated", "dataset": "pets"}
        assert (version["template"], version["params"]) == ("mobilenet_v3_small", PARAMS)
        execution = env.sfn.describe_execution(executionArn=version["execution_arn"])
        assert json.loads(execution["input"]) == {"model_id": model_id, "version": 2}
    started = {detail["model_id"]: detail for kind, detail in env.published if kind == "ModelRetrainStarted"}
    assert started[only_pets] == {"model_id": only_pets, "version": 2, "serving_version": 1,
                                  "trigger": {"type": "dataset_updated", "dataset": "pets"}}
    assert set(started) == {only_pets, pets_and_birds}


def test_a_dataset_no_model_trains_on_starts_nothing(env):
    put_dataset(env.table, "pets", "v0")
    put_dataset(env.table, "birds", "v1")
    model_id = create_model(["pets"])
    assert retraining.retrain_for_dataset(dataset_updated("birds")) == {"dataset": "birds", "models": []}
    assert latest(model_id) == 1


def test_with_the_flag_off_new_data_starts_nothing(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"], retrain=False)
    put_dataset(env.table, "pets", "v1")
    assert retraining.retrain_for_dataset(dataset_updated())["models"] == []
    assert latest(model_id) == 1 and env.published == []


def test_a_dataset_that_is_not_ready_starts_nothing(env):
    put_dataset(env.table, "pets", "v1", status="empty", tasks=())
    model_id = create_model(["pets"])
    assert retraining.retrain_for_dataset(dataset_updated())["models"] == []
    assert retraining.retrain_for_dataset(dataset_updated("never-registered"))["models"] == []
    assert latest(model_id) == 1


def test_a_model_whose_other_dataset_is_not_trainable_waits(env):
    put_dataset(env.table, "pets", "v0")
    put_dataset(env.table, "boxes", "v0", tasks=("detection",))
    model_id = create_model(["pets", "boxes"])
    put_dataset(env.table, "pets", "v1")
    result = retraining.retrain_for_dataset(dataset_updated())
    assert result["models"] == [{
        "model_id": model_id, "outcome": "not_trainable",
        "reason": "dataset 'boxes' has no classification data (it has: detection)",
    }]
    assert latest(model_id) == 1


def test_new_data_for_another_task_starts_nothing(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v1", tasks=("detection",))  # now only boxes: nothing for a classifier
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "not_trainable"}
    assert latest(model_id) == 1


# ---------------------------------------------------------------- repeats and races


def test_new_data_while_a_version_trains_queues_one_version_after_it(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"], finished=False)  # version 1 still training
    put_dataset(env.table, "pets", "v1")
    result = retraining.retrain_for_dataset(dataset_updated())
    assert outcomes(result) == {model_id: "queued"}
    assert "version 1 is still training" in result["models"][0]["reason"]
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "queued"}
    assert latest(model_id) == 1

    assert retraining.start_queued_version(model_id) is None  # version 1 still trains: it stays queued
    model_registry.update_version(model_id, 1, status="failed")
    started = retraining.start_queued_version(model_id)
    assert started["version"] == 2 and started["trigger"]["dataset"] == "pets"
    assert retraining.start_queued_version(model_id) is None and latest(model_id) == 2


def test_a_repeated_event_starts_one_version(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v1")
    event = dataset_updated()

    assert outcomes(retraining.retrain_for_dataset(event)) == {model_id: "started"}
    assert outcomes(retraining.retrain_for_dataset(event)) == {model_id: "unchanged"}
    finish(model_id, 2)
    # Delivered again after version 2 finished: the same data, nothing to train.
    assert outcomes(retraining.retrain_for_dataset(event)) == {model_id: "unchanged"}
    assert latest(model_id) == 2

    put_dataset(env.table, "pets", "v2")
    assert outcomes(retraining.retrain_for_dataset(event)) == {model_id: "started"}
    assert latest(model_id) == 3


def test_the_data_a_model_was_created_from_starts_nothing(env):
    """Late DatasetUpdated events of the registration the model was created after."""
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"], digests={"pets": "v0"})
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "unchanged"}
    assert latest(model_id) == 1


def test_an_event_read_late_sees_the_newest_data(env):
    """The dataset is read when the event is handled: an older event arriving last repeats the newest state."""
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v2")
    newer = dataset_updated()
    older = dataset_updated()
    older["detail"]["images"] = 1
    assert outcomes(retraining.retrain_for_dataset(newer)) == {model_id: "started"}
    finish(model_id, 2)
    assert outcomes(retraining.retrain_for_dataset(older)) == {model_id: "unchanged"}


def test_a_failed_retrain_is_not_repeated_for_the_same_data(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v1")
    retraining.retrain_for_dataset(dataset_updated())
    workflow.record_failure({"model_id": model_id, "version": 2, "error": {"Error": "States.Timeout"}})
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "unchanged"}


def test_two_deliveries_handled_at_once_start_one_version(env, monkeypatch):
    """The other delivery allocates between this one's read and its write: the transaction fails, the retry
    finds version 2 training."""
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v1")
    real_allocate = model_registry._allocate
    inner: list[dict] = []

    def allocate(target, model, version, spec):
        if not inner:
            inner.append({})
            inner[0] = retraining.retrain_for_dataset(dataset_updated())
        return real_allocate(target, model, version, spec)

    monkeypatch.setattr(model_registry, "_allocate", allocate)
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "queued"}
    assert outcomes(inner[0]) == {model_id: "started"}
    assert latest(model_id) == 2


def test_a_race_lost_to_a_run_that_already_failed_still_starts_nothing(env, monkeypatch):
    """As above, but the other delivery's run failed at once: no version trains, yet its allocation recorded this
    data, which the retry checks again."""
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v1")
    real_allocate = model_registry._allocate
    raced: list[bool] = []

    def allocate(target, model, version, spec):
        if not raced:
            raced.append(True)
            assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "started"}
            workflow.record_failure({"model_id": model_id, "version": 2, "error": {"Error": "States.Timeout"}})
        return real_allocate(target, model, version, spec)

    monkeypatch.setattr(model_registry, "_allocate", allocate)
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "unchanged"}
    assert latest(model_id) == 2


# ---------------------------------------------------------------- model state and failures


def test_a_model_that_serves_nothing_trains_again_on_new_data(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"], finished=False)
    workflow.record_failure({"model_id": model_id, "version": 1, "error": {"Error": "States.Timeout"}})
    put_dataset(env.table, "pets", "v1")
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {model_id: "started"}
    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"], model["latest_version"]) == ("training", None, 2)


def test_one_model_that_cannot_start_does_not_stop_the_others(env, monkeypatch):
    put_dataset(env.table, "pets", "v0")
    broken, working = create_model(["pets"]), create_model(["pets"])
    put_dataset(env.table, "pets", "v1")

    def start_execution(real_start_execution, **kwargs):
        if kwargs["name"].startswith(broken):
            raise ClientError({"Error": {"Code": "StateMachineDoesNotExist", "Message": "State Machine Does Not Exist"}},
                              "StartExecution")
        return real_start_execution(**kwargs)

    intercept_aws(monkeypatch, "stepfunctions", "start_execution", start_execution)
    result = retraining.retrain_for_dataset(dataset_updated())  # a refusal is an outcome, not a retry
    assert outcomes(result) == {broken: "failed", working: "started"}
    assert model_registry.get_version(broken, 2)["status"] == "failed"
    assert model_registry.get_model(broken)["status"] == "ready"


def test_an_unexpected_error_fails_the_invocation_after_the_others_started(env, monkeypatch):
    put_dataset(env.table, "pets", "v0")
    broken, working = create_model(["pets"]), create_model(["pets"])
    put_dataset(env.table, "pets", "v1")
    dynamodb_away: list[bool] = [True]

    def transact_write_items(real_transact_write_items, **kwargs):
        if dynamodb_away and keys.model_pk(broken) in json.dumps(kwargs):  # a transaction on the broken model
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return real_transact_write_items(**kwargs)

    intercept_aws(monkeypatch, "dynamodb", "transact_write_items", transact_write_items)
    with pytest.raises(RuntimeError, match="retraining failed for 1 model"):
        retraining.retrain_for_dataset(dataset_updated())
    assert (latest(broken), latest(working)) == (1, 2)

    # Lambda delivers the event again: the broken one now starts, the other one is not started twice.
    dynamodb_away.clear()
    assert outcomes(retraining.retrain_for_dataset(dataset_updated())) == {
        broken: "started", working: "unchanged",
    }


# ---------------------------------------------------------------- from an upload to a version


def test_an_uploaded_image_retrains_through_the_registration_event(env):
    """Registration's own DatasetUpdated event and digest, end to end within the process."""
    s3 = env.resources.s3

    def upload(key: str, colour: tuple[int, int, int]) -> dict:
        body = synthetic.encode(Image.new("RGB", (16, 16), colour))
        etag = s3.put_object(Bucket=env.resources.data_bucket, Key=key, Body=body)["ETag"]
        registration.register_object(env.resources.data_bucket, key, etag)
        return next(detail for kind, detail in reversed(env.published) if kind == "DatasetUpdated")

    for n in range(5):  # the least a classifier trains on: 5 images per class
        upload(f"datasets/pets/cat/{n}.png", (200, 10, 10 + n))
        detail = upload(f"datasets/pets/dog/{n}.png", (10, 10 + n, 200))
    from sightline.datasets import store

    created_from = store.get_dataset("pets")["training_digests"]
    model_id = create_model(["pets"], digests={"pets": created_from["classification"]})
    event = {**dataset_updated(), "detail": detail}
    assert outcomes(retraining.retrain_for_dataset(event)) == {model_id: "unchanged"}

    detail = upload("datasets/pets/dog/new.png", (10, 200, 10))
    assert outcomes(retraining.retrain_for_dataset({**event, "detail": detail})) == {model_id: "started"}
    assert model_registry.get_version(model_id, 2)["trigger"] == {"type": "dataset_updated", "dataset": "pets"}


def test_the_lambda_handler_passes_the_event_through(env):
    put_dataset(env.table, "pets", "v0")
    model_id = create_model(["pets"])
    put_dataset(env.table, "pets", "v1")
    handler = load_function("retrain_on_new_data").handler

    result = handler(load_event("eventbridge_dataset_updated.json"), LambdaContext())
    assert result == {"dataset": "pets", "models": [{"model_id": model_id, "outcome": "started", "version": 2}]}
