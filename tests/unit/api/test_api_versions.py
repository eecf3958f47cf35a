"""POST and GET /v1/models/{id}/versions: retraining through the API, the version counter, one run at a time."""
from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from sightline import aws, events, model_registry, retraining, workflow
from sightline.contract import VersionStatus
from sightline.errors import Conflict
from api_helpers import model_items, request
from support import intercept_aws, load_event

UNKNOWN_MODEL = "mdl-000000000000"


@pytest.fixture
def retrain_env(api_datasets, monkeypatch):
    """Registered datasets, a model created through the API (version 1 training), published events."""
    api_env = api_datasets
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: published.append((detail_type, detail)))
    created = request("apigw_post_models.json")  # pets, mobilenet_v3_small, epochs 5
    assert created.status == 202, created.json
    api_env.model_id = created.json["model_id"]
    api_env.published = published
    return api_env


def finish(model_id: str, version: int, *, serve: bool = True) -> None:
    """What RecordModelVersion leaves behind for a good run (promotion included when ``serve``)."""
    model_registry.update_version(model_id, version, status=VersionStatus.READY, finished_at=aws.utc_now())
    if serve:
        serving = model_registry.get_model(model_id)["serving_version"]
        assert model_registry.set_serving_version(model_id, version, replacing=serving)


def fail(model_id: str, version: int) -> None:
    workflow.record_failure({"model_id": model_id, "version": version,
                             "error": {"Error": "States.TaskFailed", "Cause": "out of memory"}})


def post_version(model_id: str, body=None, **kwargs):
    if body is None and "raw_body" not in kwargs:
        kwargs["raw_body"] = ""
    return request("apigw_post_model_versions.json", path=f"/v1/models/{model_id}/versions", body=body, **kwargs)


def list_versions(model_id: str, **query):
    return request("apigw_get_model_versions.json", path=f"/v1/models/{model_id}/versions",
                   query={k: str(v) for k, v in query.items()} if query else None)


def dataset_updated_event(name: str) -> dict:
    event = load_event("eventbridge_dataset_updated.json")
    event["detail"]["name"] = name
    return event


def executions(env) -> list[str]:
    return sorted(e["name"] for e in env.sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"])


def version_numbers(table, model_id: str) -> list[int]:
    return sorted(int(item["version"]) for item in model_items(table)
                  if item["pk"] == f"MODEL#{model_id}" and item["sk"].startswith("VERSION#"))


def assert_rejected(answer, status: int, code: str) -> None:
    assert answer.status == status, answer.json
    assert answer.json["error"]["code"] == code


# ---------------------------------------------------------------- POST: happy paths


def test_the_fixture_body_retrains_a_serving_model(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    answer = request("apigw_post_model_versions.json", path=f"/v1/models/{model_id}/versions")  # {"params": {"epochs": 20}}
    assert answer.status == 202, answer.json
    assert answer.json == {"model_id": model_id, "version": 2, "status": "training"}
    assert answer.headers["location"] == f"/v1/models/{model_id}/versions/2"

    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"], model["latest_version"]) == ("ready", 1, 2)
    # The named param changed, the others carried over from the model (epochs 5 was the model's own).
    assert model["params"] == {"epochs": 20, "batch_size": None, "learning_rate": 0.001, "image_size": 224,
                               "pretrained": True, "weights_uri": None, "freeze_backbone_epochs": 0,
                               "augment": 0.5, "any_orientation": False, "warmup_epochs": 1.0,
                               "final_learning_rate_fraction": 0.01, "weight_decay": 0.05,
                               "early_stopping_patience": 10, "seed": 0, "gpus": 1, "precision": "auto",
                               "quantize": "none", "quantize_tolerance": 1.0}
    version = model_registry.get_version(model_id, 2)
    assert version["status"] == "training" and version["trigger"] == {"type": "api"}
    assert version["params"] == model["params"] and version["datasets"] == ["pets"]
    execution = retrain_env.sfn.describe_execution(executionArn=version["execution_arn"])
    assert execution["name"] == f"{model_id}-v2"
    assert json.loads(execution["input"]) == {"model_id": model_id, "version": 2}
    assert retrain_env.published[-1] == (
        "ModelRetrainStarted",
        {"model_id": model_id, "version": 2, "serving_version": 1, "trigger": {"type": "api"}},
    )
    # Version 1 is untouched and still the one that serves.
    assert model_registry.serving_version(model_id)[1]["version"] == 1


@pytest.mark.parametrize("raw_body", ["", "{}", '{"datasets": null, "template": null, "params": null}'])
def test_no_body_trains_with_the_model_current_configuration(retrain_env, raw_body):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    assert post_version(model_id, raw_body=raw_body).status == 202
    first, second = model_registry.get_version(model_id, 1), model_registry.get_version(model_id, 2)
    for field in ("datasets", "template", "params"):
        assert second[field] == first[field]


def test_given_datasets_train_the_version_and_become_the_model_current_ones(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    assert post_version(model_id, {"datasets": ["pets", "more-pets"], "template": "mobilenet_v3_small"}).status == 202
    assert model_registry.get_version(model_id, 2)["datasets"] == ["pets", "more-pets"]
    assert model_registry.get_version(model_id, 1)["datasets"] == ["pets"]
    assert model_registry.get_model(model_id)["datasets"] == ["pets", "more-pets"]


def test_a_model_that_serves_nothing_is_training_again(retrain_env):
    model_id = retrain_env.model_id
    fail(model_id, 1)
    assert model_registry.get_model(model_id)["status"] == "failed"

    assert post_version(model_id).status == 202
    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"], model["latest_version"]) == ("training", None, 2)

    fail(model_id, 2)
    assert model_registry.get_model(model_id)["status"] == "failed"


def test_a_failed_retrain_leaves_the_serving_model_ready(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    assert post_version(model_id).status == 202
    fail(model_id, 2)
    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"]) == ("ready", 1)
    assert "out of memory" in model["failure_reason"]


# ---------------------------------------------------------------- POST: refusals


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ('{"force": true}', 400, "unknown_field"),
        ('{"name": "renamed"}', 400, "unknown_field"),
        ("[1]", 400, "invalid_json"),
        ("{not json", 400, "invalid_json"),
        ('{"datasets": []}', 400, "invalid_datasets"),
        ('{"datasets": "pets"}', 400, "invalid_datasets"),
        ('{"datasets": ["pets", "pets"]}', 400, "invalid_datasets"),
        ('{"datasets": ["ghosts"]}', 400, "unknown_dataset"),
        ('{"datasets": ["shapes"]}', 400, "dataset_task_mismatch"),
        ('{"datasets": ["broken"]}', 409, "dataset_not_ready"),
        ('{"template": "ssdlite320_mobilenet_v3_large"}', 400, "invalid_template"),
        ('{"template": "resnet9000"}', 400, "unknown_template"),
        ('{"template": 3}', 400, "invalid_template"),
        ('{"params": {"epochs": 0}}', 400, "invalid_params"),
        ('{"params": {"momentum": 0.9}}', 400, "invalid_params"),
        ('{"params": [1]}', 400, "invalid_params"),
    ],
)
def test_a_bad_request_is_refused_and_starts_nothing(retrain_env, body, status, code):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    assert_rejected(post_version(model_id, raw_body=body), status, code)
    assert version_numbers(retrain_env.resources.table, model_id) == [1]
    assert executions(retrain_env) == [f"{model_id}-v1"]
    assert model_registry.get_model(model_id)["latest_version"] == 1


def test_the_messages_match_model_creation(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    answer = post_version(model_id, {"force": True})
    assert answer.json["error"]["message"] == "unknown fields: force (allowed: datasets, template, params)"
    answer = post_version(model_id, {"params": {"epochs": 0}})
    assert answer.json["error"]["message"] == "params.epochs must be between 1 and 500, got 0"


def test_an_unknown_model_is_404(retrain_env):
    assert_rejected(post_version(UNKNOWN_MODEL), 404, "model_not_found")
    assert_rejected(list_versions(UNKNOWN_MODEL), 404, "model_not_found")


def test_requests_while_a_version_trains_queue_exactly_one_follow_up(retrain_env):
    model_id = retrain_env.model_id
    answers = [post_version(model_id), post_version(model_id, {"params": {"epochs": 2}})]  # version 1 trains
    assert [answer.status for answer in answers] == [202, 202]
    assert answers[0].json["status"] == "queued" and answers[0].json["queued_after"] == 1
    assert version_numbers(retrain_env.resources.table, model_id) == [1]

    fail(model_id, 1)  # the run ends (any way): the queued request starts, once, with the latest params
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2]
    second = model_registry.get_version(model_id, 2)
    assert second["params"]["epochs"] == 2 and second["trigger"] == {"type": "api", "queued": True}
    finish(model_id, 2)
    workflow.record_failure({"model_id": model_id, "version": 2, "error": {"Error": "x", "Cause": "late"}})
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2]  # nothing was queued behind 2
    assert executions(retrain_env) == [f"{model_id}-v1", f"{model_id}-v2"]
    assert model_registry.get_model(model_id)["params"]["epochs"] == 2  # the queued request's, once it started


def test_version_numbers_are_never_reused(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    assert post_version(model_id).json["version"] == 2
    fail(model_id, 2)
    assert post_version(model_id).json["version"] == 3
    assert model_registry.get_version(model_id, 2)["status"] == "failed"


def test_a_workflow_that_cannot_start_fails_only_the_new_version(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    retrain_env.sfn.delete_state_machine(stateMachineArn=retrain_env.state_machine_arn)
    assert_rejected(post_version(model_id), 503, "training_unavailable")
    model = model_registry.get_model(model_id)
    assert (model["status"], model["serving_version"]) == ("ready", 1)
    assert model_registry.get_version(model_id, 2)["status"] == "failed"
    assert "could not start the training workflow" in model["failure_reason"]


# ---------------------------------------------------------------- concurrency


@pytest.fixture
def atomic_dynamodb_requests(monkeypatch):
    """moto applies a transaction item by item and rolls back from a snapshot, so a concurrent request can be
    lost; DynamoDB makes each request atomic. One lock per request restores that; they still interleave."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    real_call_action = DynamoHandler.call_action

    def call_action(self):
        with lock:
            return real_call_action(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


def test_concurrent_requests_start_one_version(retrain_env, atomic_dynamodb_requests):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    answers: list = []
    barrier = threading.Barrier(4)

    def retrain() -> None:
        barrier.wait()
        answers.append(post_version(model_id))

    threads = [threading.Thread(target=retrain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [a.json["version"] for a in answers if "version" in a.json]
    queued = [a.json["status"] for a in answers if "version" not in a.json]
    assert all(a.status == 202 for a in answers)
    assert started == [2] and queued == ["queued"] * 3
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2]
    fail(model_id, 2)
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2, 3]  # three requests, one follow-up


def test_concurrent_allocations_take_distinct_numbers(retrain_env, atomic_dynamodb_requests):
    """Four callers each allocate three versions as fast as they can (each run fails at once, freeing the model
    for the next): every number from 2 to 13 is taken exactly once."""
    model_id = retrain_env.model_id
    finish(model_id, 1)
    spec = _spec_of(model_id, 1)
    taken: list[int] = []
    barrier = threading.Barrier(4)

    def allocate_three() -> None:
        barrier.wait()
        mine = 0
        while mine < 3:
            try:
                _, version = model_registry.create_version(model_id, spec, trigger={"type": "api"})
            except Conflict:  # another caller's version is training, or it won every race this time: again
                time.sleep(0.001)
                continue
            taken.append(version["version"])
            model_registry.update_version(model_id, version["version"], status=VersionStatus.FAILED)
            mine += 1

    threads = [threading.Thread(target=allocate_three) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(2, 14))
    assert version_numbers(retrain_env.resources.table, model_id) == list(range(1, 14))
    assert model_registry.get_model(model_id)["latest_version"] == 13


def test_a_caller_that_loses_the_allocation_race_reads_again(retrain_env, monkeypatch):
    """Two callers read latest_version 1 together. The other one allocates 2 first (and its run fails at once):
    this caller's transaction, made against 1, must fail and its retry must take 3, never 2 again."""
    model_id = retrain_env.model_id
    finish(model_id, 1)
    real_allocate = model_registry._allocate
    raced: list[int] = []

    def allocate(target, model, version, spec):
        if not raced:
            raced.append(version["version"])
            other = post_version(model_id).json["version"]  # the other caller runs to the end in between
            raced.append(other)
            fail(model_id, other)
        return real_allocate(target, model, version, spec)

    monkeypatch.setattr(model_registry, "_allocate", allocate)
    answer = post_version(model_id)
    assert raced == [2, 2]  # both read 1 and meant to take 2
    assert answer.status == 202 and answer.json["version"] == 3
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2, 3]
    assert model_registry.get_model(model_id)["latest_version"] == 3


def test_a_caller_that_loses_to_a_running_version_is_queued_behind_it(retrain_env, monkeypatch):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    real_allocate = model_registry._allocate
    raced: list[int] = []

    def allocate(target, model, version, spec):
        if not raced:
            raced.append(version["version"])
            raced.append(post_version(model_id).json["version"])  # and version 2 keeps training
        return real_allocate(target, model, version, spec)

    monkeypatch.setattr(model_registry, "_allocate", allocate)
    answer = post_version(model_id)
    assert (answer.status, answer.json["status"], answer.json["queued_after"]) == (202, "queued", 2)
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2]


def test_the_transaction_itself_refuses_a_stale_counter(retrain_env):
    """The conditional write, without the read in front of it: allocating against an old latest_version fails."""
    model_id = retrain_env.model_id
    finish(model_id, 1)
    model = model_registry._model_state(model_registry._model_item(model_id))
    spec = _spec_of(model_id, 1)
    version = model_registry._version_item(model_id, 2, template=spec.template, params=spec.params,
                                           datasets=spec.datasets, created=aws.utc_now())
    assert model_registry._allocate(model_id, {**model, "latest_version": 0}, version, spec) is False
    assert model_registry._allocate(model_id, model, version, spec) is True
    assert model_registry._allocate(model_id, model, {**version, "version": 3}, spec) is False
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2]


def test_too_many_lost_races_give_up_with_a_conflict(retrain_env, monkeypatch):
    model_id = retrain_env.model_id
    finish(model_id, 1)

    def always_lost(transact_write_items, **kwargs):  # as DynamoDB answers a transaction another one raced
        raise ClientError({"Error": {"Code": "TransactionCanceledException",
                                     "Message": "Transaction cancelled [ConditionalCheckFailed, None, None]"}},
                          "TransactWriteItems")

    intercept_aws(monkeypatch, "dynamodb", "transact_write_items", always_lost)
    with pytest.raises(Conflict, match="too many concurrent changes"):
        model_registry.create_version(model_id, _spec_of(model_id, 1), trigger={"type": "api"})


def _spec_of(model_id: str, version: int):
    from sightline.training_spec import TrainingSpec

    existing = model_registry.get_version(model_id, version)
    return TrainingSpec(datasets=existing["datasets"], template=existing["template"], params=existing["params"],
                        dataset_digests={})


# ---------------------------------------------------------------- GET


def test_versions_are_listed_newest_first_in_pages(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    for version in (2, 3):
        assert post_version(model_id).json["version"] == version
        finish(model_id, version, serve=False)

    answer = list_versions(model_id)
    assert answer.status == 200
    assert [v["version"] for v in answer.json["versions"]] == [3, 2, 1]
    assert answer.json["next_before"] is None
    assert answer.json["versions"][2]["trigger"] == {"type": "create"}
    assert answer.json["versions"][0] == model_registry.get_version(model_id, 3)

    first = list_versions(model_id, limit=2).json
    assert [v["version"] for v in first["versions"]] == [3, 2] and first["next_before"] == 2
    rest = list_versions(model_id, limit=2, before=first["next_before"]).json
    assert [v["version"] for v in rest["versions"]] == [1] and rest["next_before"] is None


@pytest.mark.parametrize(("query", "code"), [
    ({"limit": "0"}, "invalid_limit"), ({"limit": "101"}, "invalid_limit"), ({"limit": "x"}, "invalid_limit"),
    ({"before": "0"}, "invalid_before"), ({"before": "-2"}, "invalid_before"),
])
def test_bad_paging_parameters_are_a_400(query, code):
    assert_rejected(list_versions(UNKNOWN_MODEL, **query), 400, code)  # refused before the model is read


def test_wrong_methods_on_versions_are_a_405():
    answer = request("apigw_get_model_versions.json", method="DELETE", path=f"/v1/models/{UNKNOWN_MODEL}/versions")
    assert answer.status == 405 and answer.headers["allow"] == "GET, POST"


# ---------------------------------------------------------------- retrain_on_new_data


def test_retrain_on_new_data_is_off_unless_asked(retrain_env):
    assert model_registry.get_model(retrain_env.model_id)["retrain_on_new_data"] is False
    body = {"name": "auto", "task": "classification", "datasets": ["pets"], "retrain_on_new_data": True}
    created = request("apigw_post_models.json", body=body)
    assert created.status == 202
    answer = request("apigw_get_model.json", path=f"/v1/models/{created.json['model_id']}")
    assert answer.json["retrain_on_new_data"] is True
    assert {m["model_id"]: m["retrain_on_new_data"] for m in request("apigw_get_models.json").json["models"]} == {
        retrain_env.model_id: False, created.json["model_id"]: True,
    }


def test_a_model_stored_before_the_flag_existed_reads_as_off(retrain_env):
    retrain_env.resources.table.update_item(
        Key={"pk": f"MODEL#{retrain_env.model_id}", "sk": "META"}, UpdateExpression="REMOVE retrain_on_new_data"
    )
    assert model_registry.get_model(retrain_env.model_id)["retrain_on_new_data"] is False


def test_a_serving_model_reads_retraining_while_a_new_version_trains_and_shows_what_is_queued(retrain_env):
    model_id = retrain_env.model_id
    finish(model_id, 1)
    assert post_version(model_id).status == 202  # version 2 trains, version 1 serves
    assert post_version(model_id).json["status"] == "queued"
    answer = request("apigw_get_model.json", path=f"/v1/models/{model_id}").json
    assert answer["status"] == "retraining" and answer["serving_version"] == 1
    assert answer["queued_version"]["trigger"] == {"type": "api"}
    finish(model_id, 2)
    answer = request("apigw_get_model.json", path=f"/v1/models/{model_id}").json
    assert answer["status"] == "ready" and answer["queued_version"]["trigger"] == {"type": "api"}


def test_twenty_requests_and_new_data_during_training_start_exactly_one_follow_up(retrain_env,
                                                                                 atomic_dynamodb_requests):
    """Watson's rule: however many retrain requests and dataset events arrive while a version trains, exactly one
    more version trains after it, and nobody gets a 5xx."""
    model_id = retrain_env.model_id
    patched = request("apigw_post_model_versions.json", method="PATCH", path=f"/v1/models/{model_id}",
                      body={"retraining": {"auto": True}})
    assert patched.status == 200, patched.json
    finish(model_id, 1)
    assert post_version(model_id).json["version"] == 2  # version 2 trains from here on
    retrain_env.datasets.classification("pets", {"cat": 2, "dog": 1})  # new data for the model's dataset

    answers: list = []
    dataset_outcomes: list = []
    barrier = threading.Barrier(21)

    def retrain() -> None:
        barrier.wait()
        answers.append(post_version(model_id))

    def new_data() -> None:
        barrier.wait()
        dataset_outcomes.append(retraining.retrain_for_dataset(dataset_updated_event("pets")))

    threads = [threading.Thread(target=retrain) for _ in range(20)] + [threading.Thread(target=new_data)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 20 and all(a.status == 202 and a.json["status"] == "queued" for a in answers)
    assert [m["outcome"] for m in dataset_outcomes[0]["models"]] == ["queued"]
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2]

    finish(model_id, 2)
    assert retraining.start_queued_version(model_id)["version"] == 3  # what ModelVersionFinished starts
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2, 3]
    fail(model_id, 3)
    assert retraining.start_queued_version(model_id) is None  # 21 requests, one follow-up
    assert version_numbers(retrain_env.resources.table, model_id) == [1, 2, 3]
