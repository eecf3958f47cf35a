"""The retraining policy decides what new data starts: min_new_images since the newest version started, a
debounce that makes a burst of uploads start one version, and a cooldown between versions."""
from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest

from sightline import events, keys, model_registry, retraining, templates
from sightline.config import get_settings
from sightline.contract import VersionStatus
from support import create_training_state_machine

PARAMS = templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 2})


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def env(aws_resources, monkeypatch):
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: published.append((detail_type, detail)))
    queue_url = boto3.client("sqs").create_queue(QueueName="retrain-debounce")["QueueUrl"]
    monkeypatch.setenv("RETRAIN_DEBOUNCE_QUEUE_URL", queue_url)
    get_settings.cache_clear()
    create_training_state_machine()
    clock = Clock()
    monkeypatch.setattr(retraining, "time", clock)
    sent: list[tuple[dict, int]] = []
    original_send = retraining._send_debounce_message

    def send(model_id, dataset, token, wait):
        original_send(model_id, dataset, token, wait)
        sent.append(({"model_id": model_id, "dataset": dataset, "token": token}, int(round(wait))))

    monkeypatch.setattr(retraining, "_send_debounce_message", send)
    return SimpleNamespace(table=aws_resources.table, published=published, clock=clock, sent=sent, queue_url=queue_url)


def put_dataset(table, name: str, digest: str, images: int) -> None:
    table.put_item(Item={
        "pk": keys.dataset_pk(name), "sk": keys.META, "gsi1pk": keys.DATASETS_INDEX_PK, "gsi1sk": name,
        "name": name, "status": "ready", "classes": {"cat": 3, "dog": 4}, "images": images, "annotations": 0,
        "tasks": ["classification"], "issues": [], "issue_count": 0, "listed_at": 1,
        "training_digests": {"classification": digest},
        "created_at": "2026-11-22T05:00:00Z", "updated_at": "2026-11-22T05:00:00Z",
    })


def serving_model(policy: dict, *, images: int = 10) -> str:
    """A model serving version 1, which started from 10 images of "pets" (digest v0)."""
    model, _ = model_registry.create_model(
        name="m", task="classification", datasets=["pets"], template="mobilenet_v3_small", params=PARAMS,
        retraining={"auto": True, **policy}, dataset_digests={"pets": "v0"}, dataset_images={"pets": images},
    )
    model_registry.update_version(model["model_id"], 1, status=VersionStatus.READY)
    assert model_registry.set_serving_version(model["model_id"], 1, replacing=None)
    return model["model_id"]


def new_data(env, digest: str, images: int) -> dict:
    put_dataset(env.table, "pets", digest, images)
    result = retraining.retrain_for_dataset({"detail": {"name": "pets", "status": "ready"}})
    [outcome] = result["models"]
    return outcome


def waiting(env, policy: dict) -> str:
    """A serving model whose retraining waits on one upload of new data to "pets"."""
    put_dataset(env.table, "pets", "v0", 10)
    model_id = serving_model(policy)
    assert new_data(env, "v1", 11)["outcome"] == "debounced"
    return model_id


def latest(model_id: str) -> int:
    return model_registry.get_model(model_id)["latest_version"]


def test_fewer_new_images_than_the_policy_asks_start_nothing(env):
    put_dataset(env.table, "pets", "v0", 10)
    model_id = serving_model({"min_new_images": 5})
    assert new_data(env, "v1", 13) == {"model_id": model_id, "outcome": "too_few_new_images", "new_images": 3,
                                       "min_new_images": 5}
    assert latest(model_id) == 1
    assert new_data(env, "v2", 15)["outcome"] == "started"  # 5 since version 1 started
    assert latest(model_id) == 2
    # The count starts again from what version 2 started from.
    assert model_registry.retraining_state(model_id)["dataset_images"] == {"pets": 15}
    model_registry.update_version(model_id, 2, status=VersionStatus.READY)
    assert new_data(env, "v3", 16)["outcome"] == "too_few_new_images"


def test_a_relabelled_image_counts_when_no_minimum_is_asked(env):
    put_dataset(env.table, "pets", "v0", 10)
    model_id = serving_model({})
    assert new_data(env, "v1", 10)["outcome"] == "started"
    assert latest(model_id) == 2


def test_a_burst_of_uploads_starts_one_version_after_the_debounce(env):
    put_dataset(env.table, "pets", "v0", 10)
    model_id = serving_model({"debounce_seconds": 300})
    for step in range(5):  # five uploads, 10 s apart
        outcome = new_data(env, f"v{step + 1}", 11 + step)
        assert outcome["outcome"] == "debounced"
        env.clock.now += 10
    assert latest(model_id) == 1
    assert [delay for _, delay in env.sent] == [300] * 5
    scheduled = model_registry.retraining_state(model_id)["retrain_debounce"]
    assert scheduled["dataset"] == "pets"

    env.clock.now += 290  # the last upload's wait is over (the earlier messages came back before it)
    answers = [retraining.retrain_after_debounce(body) for body, _ in list(env.sent)]
    assert [answer["outcome"] for answer in answers] == ["superseded"] * 4 + ["started"]
    assert latest(model_id) == 2
    version = model_registry.get_version(model_id, 2)
    assert version["trigger"] == {"type": "dataset_updated", "dataset": "pets"}
    assert model_registry.retraining_state(model_id)["retrain_debounce"] is None
    # Delivered again (SQS delivers at least once): nothing more starts.
    assert retraining.retrain_after_debounce(env.sent[-1][0])["outcome"] == "superseded"
    assert latest(model_id) == 2


def test_a_message_that_comes_back_early_waits_for_the_rest(env):
    put_dataset(env.table, "pets", "v0", 10)
    model_id = serving_model({"debounce_seconds": 3600})  # longer than SQS's 900 s delay
    new_data(env, "v1", 11)
    assert env.sent[-1][1] == 3600  # SQS delays it 900 s at most
    env.clock.now += 900
    answer = retraining.retrain_after_debounce(env.sent[-1][0])
    assert answer["outcome"] == "debounced" and env.sent[-1][1] == 2700  # sent again for the rest
    env.clock.now += 2700
    assert retraining.retrain_after_debounce(env.sent[-1][0])["outcome"] == "started"
    assert latest(model_id) == 2


def test_the_debounce_message_is_a_delayed_sqs_message(env):
    waiting(env, {"debounce_seconds": 120})
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=env.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_debounce_that_ends_while_a_version_trains_queues_one(env):
    model_id = waiting(env, {"debounce_seconds": 60})
    env.clock.now += 60
    model_registry.update_version(model_id, 1, status=VersionStatus.TRAINING)  # stands for a run under way
    answer = retraining.retrain_after_debounce(env.sent[-1][0])
    assert answer["outcome"] == "queued"
    assert model_registry.pending_version(model_id)["trigger"] == {"type": "dataset_updated", "dataset": "pets"}


def test_turning_retraining_off_drops_a_waiting_debounce(env):
    model_id = waiting(env, {"debounce_seconds": 60})
    model_registry.set_policies(model_id, retraining={**model_registry.get_model(model_id)["retraining"],
                                                      "auto": False})
    env.clock.now += 60
    assert retraining.retrain_after_debounce(env.sent[-1][0])["outcome"] == "superseded"
    assert latest(model_id) == 1


def test_new_data_within_the_cooldown_waits_for_its_end(env):
    put_dataset(env.table, "pets", "v0", 10)
    model_id = serving_model({"cooldown_seconds": 3600})
    created = model_registry.get_version(model_id, 1)["created_at"]
    env.clock.now = retraining._epoch(created) + 600  # version 1 started 10 minutes ago
    outcome = new_data(env, "v1", 11)
    assert outcome["outcome"] == "debounced" and env.sent[-1][1] == 3000
    env.clock.now += 3000
    assert retraining.retrain_after_debounce(env.sent[-1][0])["outcome"] == "started"
    assert latest(model_id) == 2


def test_the_handler_takes_debounce_messages_from_the_queue(env):
    from support import LambdaContext, load_function

    model_id = waiting(env, {"debounce_seconds": 30})
    env.clock.now += 30
    handler = load_function("retrain_on_new_data").handler
    event = {"Records": [{"messageId": "m1", "receiptHandle": "r", "body": json.dumps(env.sent[-1][0]),
                          "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                          "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:retrain-debounce",
                          "awsRegion": "us-east-1"}]}
    assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert latest(model_id) == 2
