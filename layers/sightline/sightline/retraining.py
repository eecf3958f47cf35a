"""New versions of existing models: on request (``POST /v1/models/{id}/versions``) and when a dataset a model
trains on gets new data (a ``DatasetUpdated`` event for a model whose retraining policy has ``auto``).

Both go through ``start_version``: allocate the next version (``model_registry.create_version``: one training
run per model at a time), start the training workflow exactly as model creation does, announce it.

New data follows the model's retraining policy (``sightline.model_policy``): nothing starts before
``min_new_images`` images arrived since the newest version started; with ``debounce_seconds`` (or within
``cooldown_seconds`` of the newest version's start) the model records a debounce token and a delayed message on
the debounce queue comes back for it; every later event replaces the token, so only the last event's message
starts a version: a burst of uploads starts one.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger

from sightline import aws, events, model_policy, model_registry, reconciler, training_spec, workflow
from sightline.config import get_settings
from sightline.contract import DatasetStatus, VersionStatus
from sightline.datasets import store as dataset_store
from sightline.errors import SightlineError
from sightline.training_spec import TrainingSpec

logger = Logger(child=True)

MODEL_RETRAIN_STARTED = "ModelRetrainStarted"

# What happened to each model a DatasetUpdated event concerns.
STARTED = "started"
UNCHANGED = "unchanged"  # the model's newest version already started from this data
QUEUED = "queued"  # a version trains: one more follows it
NOT_TRAINABLE = "not_trainable"  # a dataset of the model is missing, not ready or has no data for its task
FAILED = "failed"
TOO_FEW_NEW_IMAGES = "too_few_new_images"  # fewer than the policy's min_new_images since the newest version
DEBOUNCED = "debounced"  # waits out the policy's debounce or cooldown; the debounce queue brings it back
SUPERSEDED = "superseded"  # a debounce message that a later event replaced

SQS_MAX_DELAY_SECONDS = 900


class DataAlreadyTrained(SightlineError):
    """The model's newest version was started from exactly this dataset content."""

    status = 409
    code = "data_unchanged"


def start_version(
    model_id: str, spec: TrainingSpec, *, trigger: dict, precondition: Callable[[dict], None] | None = None
) -> dict:
    """Create the model's next version in status training and start its workflow; the new version.

    Raises ``VersionInProgress`` while another version trains, ``TrainingUnavailable`` when the workflow
    cannot start (the version is then failed; the model too only if it serves nothing).
    """
    model, version = model_registry.create_version(model_id, spec, trigger=trigger, precondition=precondition)
    number = version["version"]
    logger.info("version created", extra={"model_id": model_id, "version": number, "trigger": trigger})
    workflow.start_training(model_id, number)
    events.publish(
        MODEL_RETRAIN_STARTED,
        {"model_id": model_id, "version": number, "serving_version": model.get("serving_version"),
         "trigger": trigger},
    )
    return version


# ---------------------------------------------------------------- coalescing


def request_version(model_id: str, spec: TrainingSpec, *, trigger: dict, settled: bool = False) -> dict:
    """Start a version now, or, while one trains, queue exactly one to follow it (Watson's rule: many retraining
    requests make one retraining). The queued request is the latest one's spec and trigger; the follow-up trains
    on the data as it is when it starts. Returns the new version, or ``{"status": "queued", ...}``."""
    try:
        return start_version(model_id, spec, trigger=trigger)
    except model_registry.VersionInProgress as busy:
        if not settled and busy.version is not None and reconciler.settle_if_over(model_id, busy.version):
            # The blocking run was over (its execution ended or never began): this, the latest request, starts
            # now and supersedes whatever was queued behind the run.
            model_registry.take_pending_version(model_id)
            return request_version(model_id, spec, trigger=trigger, settled=True)
        _queue_follow_up(model_id, spec, trigger)
        # The running version may have finished between the refusal and the queueing, missing the request:
        # start it here then (taking the queued request is atomic, so it starts once).
        if model_registry.latest_version_status(model_id) != VersionStatus.TRAINING:
            started = start_queued_version(model_id)
            if started is not None:
                return started
        return {"model_id": model_id, "status": QUEUED, "queued_after": busy.version, "reason": busy.message}


def _queue_follow_up(model_id: str, spec: TrainingSpec, trigger: dict) -> None:
    model_registry.update_model(model_id, pending_version={
        "datasets": spec.datasets, "template": spec.template, "params": spec.params,
        "dataset_digests": spec.dataset_digests, "dataset_images": spec.dataset_images,
        "trigger": trigger, "queued_at": aws.utc_now(),
    })
    logger.info("version queued behind the one training", extra={"model_id": model_id, "trigger": trigger})


def start_queued_version(model_id: str) -> dict | None:
    """Start the version queued while the last one trained, if any (called when a version finishes). None
    when nothing was queued, another caller took it, or a version trains again (then it stays queued)."""
    pending = model_registry.take_pending_version(model_id)
    if pending is None:
        return None
    spec = TrainingSpec(datasets=list(pending["datasets"]), template=pending["template"],
                        params=dict(pending["params"] or {}), dataset_digests=dict(pending.get("dataset_digests") or {}),
                        dataset_images={k: int(v) for k, v in (pending.get("dataset_images") or {}).items()})
    try:
        return start_version(model_id, spec, trigger={**pending["trigger"], "queued": True})
    except model_registry.VersionInProgress:
        _queue_follow_up(model_id, spec, pending["trigger"])
        return None
    except Exception:
        _queue_follow_up(model_id, spec, pending["trigger"])  # not lost: the caller's retry starts it
        raise


def retrain_for_dataset(event: dict[str, Any]) -> dict[str, Any]:
    """A ``DatasetUpdated`` event: start a version of every model that opted in, trains on the dataset, has no
    version training, and has not already started a version from the dataset's current content.

    The dataset is read again (strongly consistent) rather than trusted from the event, so late, repeated or
    reordered events all see the newest content, and the training-data digest tells new data from a repeat.
    """
    detail = event.get("detail") or {}
    name = detail.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"DatasetUpdated event without a dataset name: {detail!r}")
    dataset = dataset_store.get_dataset(name, consistent=True)
    if dataset is None or dataset.get("status") != DatasetStatus.READY:
        logger.info("dataset not ready; nothing to retrain", extra={"dataset": name})
        return {"dataset": name, "models": []}

    outcomes: list[dict[str, Any]] = []
    unexpected: list[Exception] = []
    for model in model_registry.models_retraining_on(name):
        try:
            outcome = _retrain(model, name, dataset)
        except Exception as error:  # noqa: BLE001 - one model's failure must not keep the others from retraining
            logger.exception("retrain failed", extra={"model_id": model["model_id"], "dataset": name})
            outcome = {"outcome": FAILED, "reason": str(error)}
            if not isinstance(error, SightlineError):
                unexpected.append(error)
        outcomes.append({"model_id": model["model_id"], **outcome})
    logger.info("dataset update handled", extra={"dataset": name, "models": outcomes})
    if unexpected:
        # Throttling or a service error: fail the invocation so the event is delivered again. Safe: models
        # already started now have a version training, or the digest of this content.
        raise RuntimeError(f"retraining failed for {len(unexpected)} model(s) of dataset {name}") from unexpected[0]
    return {"dataset": name, "models": outcomes}


def _retrain(model: dict, name: str, dataset: dict, *, debounced: bool = False) -> dict[str, Any]:
    if _already_started_from(model, name, (dataset.get("training_digests") or {}).get(model["task"])):
        return {"outcome": UNCHANGED}  # the common repeat, answered before reading the model's other datasets
    images: dict[str, int] = {}
    try:
        # Every dataset of the model is checked as at creation; its current template and params carry over.
        digests = training_spec.check_datasets_trainable(
            list(model["datasets"]), model["task"],
            training_spec.counting_images(lambda each: dataset_store.get_dataset(each, consistent=True), images),
        )
    except SightlineError as refusal:
        return {"outcome": NOT_TRAINABLE, "reason": refusal.message}
    digest = digests.get(name)
    policy = model_policy.retraining_of(model)
    new_images = _new_images(model, images)
    if new_images is not None and new_images < policy["min_new_images"]:
        return {"outcome": TOO_FEW_NEW_IMAGES, "new_images": new_images, "min_new_images": policy["min_new_images"]}
    wait = max(0 if debounced else policy["debounce_seconds"], _cooldown_left(model, policy["cooldown_seconds"]))
    if wait > 0 and get_settings().retrain_debounce_queue_url:
        return _debounce(model["model_id"], name, wait)

    def data_is_new(current: dict) -> None:
        # Checked again on the model as read inside the allocation: a concurrent duplicate event loses here.
        if _already_started_from(current, name, digest):
            raise DataAlreadyTrained(f"model {current['model_id']} already started a version from this data of {name}")

    spec = TrainingSpec(
        datasets=list(model["datasets"]), template=model["template"], params=dict(model["params"] or {}),
        dataset_digests=digests, dataset_images=images,
    )
    try:
        version = start_version(
            model["model_id"], spec,
            trigger={"type": model_registry.TRIGGER_DATASET_UPDATED, "dataset": name},
            precondition=data_is_new,
        )
    except DataAlreadyTrained:
        return {"outcome": UNCHANGED}
    except model_registry.VersionInProgress as refusal:
        # New data while a version trains: one version follows it, on the data as it is then.
        _queue_follow_up(model["model_id"], spec,
                         {"type": model_registry.TRIGGER_DATASET_UPDATED, "dataset": name})
        return {"outcome": QUEUED, "reason": refusal.message}
    return {"outcome": STARTED, "version": version["version"]}


def _already_started_from(model: dict, dataset: str, digest: str | None) -> bool:
    recorded = model.get("dataset_digests") or {}
    return dataset in recorded and recorded[dataset] == digest


def _new_images(model: dict, images: dict[str, int]) -> int | None:
    """Images the model's datasets gained since its newest version started (None: no count was recorded then,
    as for models from before the policy, so any new data counts)."""
    recorded = model.get("dataset_images") or {}
    if not recorded:
        return None
    return sum(images.values()) - sum(int(recorded.get(name, 0)) for name in images)


def _cooldown_left(model: dict, cooldown_seconds: int) -> float:
    """Seconds until ``cooldown_seconds`` have passed since the newest version started (0: none left)."""
    if cooldown_seconds <= 0 or not model.get("latest_version"):
        return 0.0
    try:
        started = model_registry.get_version(model["model_id"], int(model["latest_version"]))["created_at"]
    except SightlineError:
        return 0.0
    elapsed = time.time() - _epoch(started)
    return max(0.0, cooldown_seconds - elapsed)


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _debounce(model_id: str, dataset: str, wait: float) -> dict[str, Any]:
    """Replace the model's debounce with a new one due in ``wait`` seconds and send its delayed message."""
    token = secrets.token_hex(8)
    due = time.time() + wait
    due_at = datetime.fromtimestamp(due, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    model_registry.set_retrain_debounce(model_id, {"token": token, "dataset": dataset, "due_at": due_at})
    _send_debounce_message(model_id, dataset, token, wait)
    logger.info("retraining debounced", extra={"model_id": model_id, "dataset": dataset, "due_at": due_at})
    return {"outcome": DEBOUNCED, "due_at": due_at}


def _send_debounce_message(model_id: str, dataset: str, token: str, wait: float) -> None:
    aws.client("sqs").send_message(
        QueueUrl=get_settings().retrain_debounce_queue_url,
        MessageBody=json.dumps({"model_id": model_id, "dataset": dataset, "token": token}),
        DelaySeconds=max(0, min(SQS_MAX_DELAY_SECONDS, int(round(wait)))),
    )


def retrain_after_debounce(body: dict[str, Any]) -> dict[str, Any]:
    """A debounce message came back: retrain the model if its debounce is still this one and is due (a longer
    wait than SQS delays sends the message again for the rest)."""
    model_id, dataset_name, token = (str(body.get(field) or "") for field in ("model_id", "dataset", "token"))
    try:
        model = model_registry.retraining_state(model_id)
    except SightlineError:
        return {"model_id": model_id, "outcome": SUPERSEDED, "reason": "the model no longer exists"}
    debounce = model.get("retrain_debounce") or {}
    if debounce.get("token") != token:
        return {"model_id": model_id, "outcome": SUPERSEDED}
    left = _epoch(debounce["due_at"]) - time.time()
    if left > 1:
        _send_debounce_message(model_id, dataset_name, token, left)
        return {"model_id": model_id, "outcome": DEBOUNCED, "due_at": debounce["due_at"]}
    outcome: dict[str, Any]
    dataset = dataset_store.get_dataset(dataset_name, consistent=True)
    if not model_policy.retraining_of(model)["auto"]:
        outcome = {"outcome": SUPERSEDED, "reason": "retraining on new data was turned off"}
    elif dataset is None or dataset.get("status") != DatasetStatus.READY:
        outcome = {"outcome": NOT_TRAINABLE, "reason": f"dataset {dataset_name!r} is not ready"}
    else:
        outcome = _retrain_guarded(model, dataset_name, dataset)
    if outcome["outcome"] != DEBOUNCED:  # a cooldown that still runs wrote a debounce of its own
        model_registry.set_retrain_debounce(model_id, None, replacing_token=token)
    logger.info("debounced retraining handled", extra={"model_id": model_id, "dataset": dataset_name, **outcome})
    return {"model_id": model_id, **outcome}


def _retrain_guarded(model: dict, name: str, dataset: dict) -> dict[str, Any]:
    try:
        return _retrain(model, name, dataset, debounced=True)
    except SightlineError as refusal:
        return {"outcome": FAILED, "reason": refusal.message}
