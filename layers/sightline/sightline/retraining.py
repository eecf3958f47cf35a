"""New versions of existing models: on request (``POST /v1/models/{id}/versions``) and when a dataset a model
trains on gets new data (a ``DatasetUpdated`` event for a model with ``retrain_on_new_data``).

Both go through ``start_version``: allocate the next version (``model_registry.create_version``: one training
run per model at a time), start the training workflow exactly as model creation does, announce it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from sightline import aws, events, model_registry, training_spec, workflow
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


def request_version(model_id: str, spec: TrainingSpec, *, trigger: dict) -> dict:
    """Start a version now, or, while one trains, queue exactly one to follow it (Watson's rule: many retraining
    requests make one retraining). The queued request is the latest one's spec and trigger; the follow-up trains
    on the data as it is when it starts. Returns the new version, or ``{"status": "queued", ...}``."""
    try:
        return start_version(model_id, spec, trigger=trigger)
    except model_registry.VersionInProgress as busy:
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
        "dataset_digests": spec.dataset_digests, "trigger": trigger, "queued_at": aws.utc_now(),
    })
    logger.info("version queued behind the one training", extra={"model_id": model_id, "trigger": trigger})


def start_queued_version(model_id: str) -> dict | None:
    """Start the version queued while the last one trained, if any (called when a version finishes). None
    when nothing was queued, another caller took it, or a version trains again (then it stays queued)."""
    pending = model_registry.take_pending_version(model_id)
    if pending is None:
        return None
    spec = TrainingSpec(datasets=list(pending["datasets"]), template=pending["template"],
                        params=dict(pending["params"] or {}), dataset_digests=dict(pending.get("dataset_digests") or {}))
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


def _retrain(model: dict, name: str, dataset: dict) -> dict[str, Any]:
    if _already_started_from(model, name, (dataset.get("training_digests") or {}).get(model["task"])):
        return {"outcome": UNCHANGED}  # the common repeat, answered before reading the model's other datasets
    try:
        # Every dataset of the model is checked as at creation; its current template and params carry over.
        digests = training_spec.check_datasets_trainable(
            list(model["datasets"]), model["task"], lambda each: dataset_store.get_dataset(each, consistent=True)
        )
    except SightlineError as refusal:
        return {"outcome": NOT_TRAINABLE, "reason": refusal.message}
    digest = digests.get(name)

    def data_is_new(current: dict) -> None:
        # Checked again on the model as read inside the allocation: a concurrent duplicate event loses here.
        if _already_started_from(current, name, digest):
            raise DataAlreadyTrained(f"model {current['model_id']} already started a version from this data of {name}")

    spec = TrainingSpec(
        datasets=list(model["datasets"]), template=model["template"], params=dict(model["params"] or {}),
        dataset_digests=digests,
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
