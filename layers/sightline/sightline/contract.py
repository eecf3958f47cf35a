"""The names the parts of Sightline agree on, written once.

The functions, the layer and the training container (which copies this package into its image) all import
these: artifact file names and keys, document formats, the training job's environment, tasks, and the states of
datasets, models and versions with the transitions between them. docs/architecture.md shows the same table;
a test keeps the two in step.
"""
from __future__ import annotations

import hashlib
import json
from enum import StrEnum

# ---------------------------------------------------------------- tasks

CLASSIFICATION = "classification"
DETECTION = "detection"
# Several classes per image, or none (sigmoid scores, not a softmax); a dataset of labelled images can train it.
MULTILABEL = "multilabel"
TASKS = (CLASSIFICATION, DETECTION, MULTILABEL)

# ---------------------------------------------------------------- documents and artifacts

LABELS_FORMAT = "sightline.labels/v1"
MANIFEST_FORMAT = "sightline.manifest/v1"

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
# Written by the training job after every epoch beside its outputs (not one of them: a run may stop any time).
PROGRESS_FILE = "progress.json"
PROGRESS_FORMAT = "sightline.progress/v1"
CHECKPOINT_FILE = "checkpoint.pt"
MANIFEST_FILE = "manifest.json"
# The model card: what the version is, how it was trained and measured (written beside the outputs).
CARD_FILE = "card.json"
# What a finished training job publishes under its output URI; metrics.json goes last (it marks completeness).
TRAINING_OUTPUTS = (MODEL_FILE, LABELS_FILE, METRICS_FILE)


def snapshot_id(manifest: dict) -> str:
    """The content address of a manifest (its dataset snapshot): what it trains on, not when it was built. Here
    rather than in ``sightline.datasets.snapshots`` so that the training job names the snapshot on its card."""
    content = {field: manifest[field] for field in ("format", "task", "classes", "items")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manifest_key(model_id: str, version: int) -> str:
    """The dataset snapshot a version trains on, in the artifact bucket."""
    return f"manifests/{model_id}/v{version}/{MANIFEST_FILE}"


def version_prefix(model_id: str, version: int) -> str:
    """Where the training job writes ``TRAINING_OUTPUTS`` in the artifact bucket."""
    return f"models/{model_id}/v{version}/"


def checkpoint_prefix(model_id: str, version: int) -> str:
    """Where the training job keeps ``CHECKPOINT_FILE`` between attempts."""
    return f"checkpoints/{model_id}/v{version}/"


# ---------------------------------------------------------------- the training job's environment


class JobEnvironment(StrEnum):
    """Variables the workflow sets on the Batch job (``ContainerOverrides.Environment``)."""

    MANIFEST_URI = "SIGHTLINE_MANIFEST_URI"
    OUTPUT_URI = "SIGHTLINE_OUTPUT_URI"
    CHECKPOINT_URI = "SIGHTLINE_CHECKPOINT_URI"
    TEMPLATE = "SIGHTLINE_TEMPLATE"
    PARAMS = "SIGHTLINE_PARAMS"
    # The run's correlation id (the execution's name, as the workflow steps log it): on every log line of the job.
    CORRELATION_ID = "SIGHTLINE_CORRELATION_ID"
    # Set on the job definition (the stack's WeightsUri parameter), not per job: an s3:// prefix of weights files.
    WEIGHTS_URI = "SIGHTLINE_WEIGHTS_URI"


class EvaluationEnvironment(StrEnum):
    """Variables the API sets on an evaluation's Batch job (``sightline.evaluations``, ``sightline_training.evaluate``)."""

    MANIFEST_URI = "SIGHTLINE_EVALUATION_MANIFEST_URI"  # the dataset's items, built by the API when it was asked
    MODEL_URI = "SIGHTLINE_EVALUATION_MODEL_URI"  # the version's folder: model.onnx and labels.json
    OUTPUT_URI = "SIGHTLINE_EVALUATION_OUTPUT_URI"  # where evaluation.json (or failure.json) goes


EVALUATION_FORMAT = "sightline.evaluation/v1"
EVALUATION_FILE = "evaluation.json"
# What a failed evaluation job leaves beside its manifest: {"reason": ...} (exit 1, or 2 for invalid input).
EVALUATION_FAILURE_FILE = "failure.json"


def evaluation_prefix(evaluation_id: str) -> str:
    """An evaluation's folder in the artifact bucket: manifest.json, then evaluation.json or failure.json."""
    return f"evaluations/{evaluation_id}/"


BATCH_PREDICTION_FORMAT = "sightline.batch-predictions/v1"
# A batch prediction's folder in the artifact bucket: one JSON Lines part per batch of objects, then manifest.json
# (the parts and the counts) when the job ends.
BATCH_PREDICTION_PARTS = "parts/"


def batch_prediction_prefix(batch_prediction_id: str) -> str:
    """Where a batch prediction writes its results in the artifact bucket."""
    return f"batch-predictions/{batch_prediction_id}/"


# ---------------------------------------------------------------- states


class DatasetStatus(StrEnum):
    READY = "ready"  # at least one usable image for some task
    EMPTY = "empty"  # nothing to train on and nothing refused: no files, or annotations still waiting for images
    INVALID = "invalid"  # every uploaded file was refused; ``issues`` say why
    DELETING = "deleting"  # DELETE /v1/datasets/{name} was accepted; its items and files are being removed
    # Written by releases before terminal states existed; read back as one of the three above (see
    # ``sightline.datasets.store.migrate_dataset_status``) and never written any more.
    REGISTERING = "registering"


class VersionStatus(StrEnum):
    TRAINING = "training"
    READY = "ready"  # trained; ``promoted`` says whether it serves (or served)
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped on request (POST .../cancel); never serves


class EvaluationStatus(StrEnum):
    QUEUED = "queued"  # the Batch job was submitted
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BatchPredictionStatus(StrEnum):
    RUNNING = "running"  # the workflow was started: objects are listed and predicted in batches
    SUCCEEDED = "succeeded"  # every listed object has its line(s); failed objects are lines with their error
    FAILED = "failed"  # the job itself failed (the prefix could not be listed, the workflow died): failure_reason


class ModelStatus(StrEnum):
    TRAINING = "training"  # serves nothing yet; a version trains
    READY = "ready"  # serves ``serving_version`` (and keeps serving it while a newer version trains)
    FAILED = "failed"  # serves nothing; the last run failed (``failure_reason``)


# Every status write goes from one of these states to another (None: the item does not exist yet). The
# conditional writes in the registries are derived from this table, and docs/architecture.md prints it.
DATASET_TRANSITIONS: dict[DatasetStatus | None, frozenset[DatasetStatus]] = {
    # A dataset's status is recomputed from its files after every change, so any state can follow any other.
    # Any state may start a deletion; a deleting dataset only goes away (its items are removed, not moved on).
    None: frozenset({DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID}),
    DatasetStatus.READY: frozenset({DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID, DatasetStatus.DELETING}),
    DatasetStatus.EMPTY: frozenset({DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID, DatasetStatus.DELETING}),
    DatasetStatus.INVALID: frozenset({DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID,
                                      DatasetStatus.DELETING}),
    DatasetStatus.REGISTERING: frozenset({DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID,
                                          DatasetStatus.DELETING}),
    DatasetStatus.DELETING: frozenset(),
}
VERSION_TRANSITIONS: dict[VersionStatus | None, frozenset[VersionStatus]] = {
    None: frozenset({VersionStatus.TRAINING}),
    VersionStatus.TRAINING: frozenset({VersionStatus.READY, VersionStatus.FAILED, VersionStatus.CANCELLED}),
    VersionStatus.READY: frozenset(),  # final; promotion is the separate ``promoted`` flag
    VersionStatus.FAILED: frozenset(),  # final; a retry is a new version
    # Final: the run's own end (an ABORTED execution, a job that finished anyway) never overwrites it.
    VersionStatus.CANCELLED: frozenset(),
}
MODEL_TRANSITIONS: dict[ModelStatus | None, frozenset[ModelStatus]] = {
    None: frozenset({ModelStatus.TRAINING}),
    ModelStatus.TRAINING: frozenset({ModelStatus.READY, ModelStatus.FAILED}),
    ModelStatus.READY: frozenset({ModelStatus.READY}),  # a serving model keeps serving, whatever newer runs do
    ModelStatus.FAILED: frozenset({ModelStatus.TRAINING}),  # a new version starts on a model that serves nothing
}


def states_leading_to(transitions: dict, target: StrEnum) -> tuple[str, ...]:
    """The existing states from which ``target`` may be written, sorted: what a conditional write checks."""
    return tuple(sorted(str(state) for state, nexts in transitions.items() if state is not None and target in nexts))
