"""The shapes the API answers (docs/openapi.yaml), as TypedDicts: plain dicts at run time, typed for checkers.

``total=False``: fields the API adds later, or leaves out for older items, never break a caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Task = Literal["classification", "detection", "multilabel"]
Scope = Literal["predict", "read", "train", "admin"]
VersionStatus = Literal["training", "ready", "failed", "cancelled"]
TERMINAL_VERSION_STATUSES = ("ready", "failed", "cancelled")
SETTLED_DATASET_STATUSES = ("ready", "invalid", "empty")


class ErrorBody(TypedDict, total=False):
    code: str
    message: str
    reference: str


class ApiKey(TypedDict, total=False):
    key_id: str
    name: str
    scopes: list[Scope]
    last4: str
    created_at: str
    revoked_at: str | None
    key: str  # only in the answer that created it


class ParamSpec(TypedDict, total=False):
    type: Literal["integer", "number", "boolean", "string"]
    default: Any
    minimum: float
    maximum: float
    pattern: str
    choices: list[str]
    description: str


class Template(TypedDict, total=False):
    id: str
    task: Task
    description: str
    architecture: str
    weights: dict[str, str]
    params: dict[str, ParamSpec]
    default_for_task: bool


class Issue(TypedDict, total=False):
    key: str
    reason: str


class Dataset(TypedDict, total=False):
    name: str
    status: Literal["ready", "empty", "invalid", "deleting"]
    formats: list[str]
    negatives: int
    classes: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    class_count: int
    duplicates: dict[str, Any]
    too_small: dict[str, dict[str, Any]]
    images: int
    annotations: int
    tasks: list[Task]
    issues: list[Issue]
    issue_count: int
    training_digests: dict[str, str]
    created_at: str
    updated_at: str


class DatasetImage(TypedDict, total=False):
    sha256: str
    path: str
    copies: int
    width: int
    height: int
    classes: list[str]
    labels: list[str]
    boxes: list[dict[str, Any]]
    box_count: int
    thumbnail_url: str


class DatasetSnapshot(TypedDict, total=False):
    snapshot_id: str
    task: Task
    datasets: list[str]
    classes: dict[str, int]
    images: int
    manifest: str
    created_at: str
    model_versions: list[str]


class Upload(TypedDict, total=False):
    path: str
    key: str
    size: int
    type: Literal["single", "multipart"]
    method: str
    url: str
    headers: dict[str, str]
    upload_id: str
    part_size: int
    parts: list[dict[str, Any]]


class UploadsAnswer(TypedDict, total=False):
    dataset: str
    bucket: str
    expires_in: int
    expires_at: str
    complete: str
    uploads: list[Upload]


class TrainingProgress(TypedDict, total=False):
    format: str
    epoch: int
    epochs: int
    train_loss: float | None
    metric: dict[str, Any]
    images_per_second: float | None
    eta_seconds: float
    history: list[dict[str, Any]]
    updated_at: str


class ModelVersion(TypedDict, total=False):
    model_id: str
    version: int
    status: VersionStatus
    progress: TrainingProgress | None
    template: str
    params: dict[str, Any]
    datasets: list[str]
    trigger: dict[str, Any] | None
    classes: list[str]
    metrics: dict[str, Any] | None
    weights: dict[str, Any] | None
    artifacts: dict[str, str]
    promoted: bool
    promotion: dict[str, Any] | None
    failure_reason: str | None
    created_at: str
    finished_at: str | None


class Model(TypedDict, total=False):
    model_id: str
    name: str
    task: Task
    status: Literal["training", "retraining", "ready", "failed"]
    classes: list[str]
    serving_version: int | None
    latest_version: int
    retrain_on_new_data: bool
    retraining: dict[str, Any]
    promotion: dict[str, Any]
    retraining_scheduled: dict[str, Any] | None
    queued_version: dict[str, Any] | None
    datasets: list[str]
    template: str
    params: dict[str, Any]
    failure_reason: str | None
    created_at: str
    updated_at: str


class Artifact(TypedDict, total=False):
    name: str
    size: int
    uri: str
    url: str


class Artifacts(TypedDict, total=False):
    model_id: str
    version: int
    status: str
    expires_in: int
    artifacts: list[Artifact]


class Evaluation(TypedDict, total=False):
    evaluation_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    model_id: str
    version: int
    dataset: str
    task: Task
    metrics: dict[str, float]
    images: dict[str, int]
    class_mismatch: dict[str, list[str]]
    failure_reason: str
    report: dict[str, Any]


class Comparison(TypedDict, total=False):
    evaluations: list[dict[str, Any]]
    rows: list[dict[str, Any]]


class BatchPrediction(TypedDict, total=False):
    batch_prediction_id: str
    status: Literal["running", "succeeded", "failed"]
    model_id: str
    version: int
    source: str
    counts: dict[str, int | None]
    results: dict[str, Any]
    failure_reason: str


class Box(TypedDict):
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class Prediction(TypedDict, total=False):
    label: str
    score: float
    box: Box


class PredictAnswer(TypedDict, total=False):
    model_id: str
    version: int
    task: Task
    image: dict[str, int]
    predictions: list[Prediction]
    images: list[dict[str, Any]]  # a zip: one entry per image (name, image, predictions or error)


class MultiPredictAnswer(TypedDict):
    results: list[dict[str, Any]]  # PredictAnswer, or {"model_id", "error"}


@dataclass(frozen=True)
class UploadProgress:
    """What ``upload_dataset`` has done so far (its ``on_progress`` gets one after every file and part)."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    path: str | None = None  # the file that just advanced


@dataclass(frozen=True)
class RegistrationProgress:
    """Where the registration of one upload's files stands (``wait_for_uploads``' ``on_poll`` gets one a poll)."""

    files_total: int
    files_read: int  # registered, invalid or superseded: registration is done with them
    invalid: int
    summarized: bool  # the dataset's summary includes every file
    status: str | None  # the dataset's


@dataclass(frozen=True)
class UploadResult:
    dataset: str
    files: list[str]
    bytes: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of files left out
    dataset_state: Dataset | None = None  # after waiting for registration
    file_states: list[dict[str, Any]] = field(default_factory=list)  # uploads/status per file, after waiting
