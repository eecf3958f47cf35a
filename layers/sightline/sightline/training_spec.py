"""What a model version trains on (datasets, template, params), checked the same way wherever a version starts:
``POST /v1/models``, ``POST /v1/models/{id}/versions`` and event-triggered retraining."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sightline import templates
from sightline.contract import DatasetStatus
from sightline.errors import BadRequest, Conflict

MAX_DATASETS_PER_MODEL = 50

# name -> the dataset's public view (``sightline.datasets.store.public_dataset``), or None when there is none
DatasetReader = Callable[[str], "dict[str, Any] | None"]


@dataclass(frozen=True)
class TrainingSpec:
    datasets: list[str]
    template: str
    params: dict[str, int | float]
    # Each dataset's training-data digest for the model's task when it was checked (None: the dataset predates
    # digests). Stored on the model so event-triggered retraining can tell new data from a repeated event.
    dataset_digests: dict[str, str | None]
    # Each dataset's image count when it was checked: what retraining's min_new_images counts new images from.
    dataset_images: dict[str, int] = field(default_factory=dict)


def resolve(
    task: str, *, datasets: Any, template: Any, params: Any, read_dataset: DatasetReader
) -> TrainingSpec:
    """Validate a request's datasets, template and params for ``task``; raise ``BadRequest``/``Conflict``
    naming the first wrong field (in that order, datasets last checked against the store)."""
    names = dataset_names(datasets)
    chosen = templates.template_for(task, template_id(template))
    resolved = chosen.resolve_params(params)
    images: dict[str, int] = {}
    digests = check_datasets_trainable(names, task, counting_images(read_dataset, images))
    return TrainingSpec(datasets=names, template=chosen.id, params=resolved, dataset_digests=digests,
                        dataset_images=images)


def counting_images(read_dataset: DatasetReader, images: dict[str, int]) -> DatasetReader:
    """``read_dataset`` that also notes each dataset's image count in ``images``."""
    def read(name: str) -> dict[str, Any] | None:
        dataset = read_dataset(name)
        if dataset is not None:
            images[name] = int(dataset.get("images") or 0)
        return dataset

    return read


def dataset_names(datasets: Any) -> list[str]:
    if not isinstance(datasets, list) or not datasets:
        raise BadRequest("datasets must be a non-empty list of dataset names", code="invalid_datasets")
    if len(datasets) > MAX_DATASETS_PER_MODEL:
        raise BadRequest(
            f"datasets lists {len(datasets)} datasets; at most {MAX_DATASETS_PER_MODEL} are allowed",
            code="invalid_datasets",
        )
    seen: set[str] = set()
    for name in datasets:
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"datasets must contain dataset names, got {name!r}", code="invalid_datasets")
        if name in seen:
            raise BadRequest(f"datasets lists {name!r} more than once", code="invalid_datasets")
        seen.add(name)
    return list(datasets)


def template_id(template: Any) -> str | None:
    if template is not None and not isinstance(template, str):
        raise BadRequest(f"template must be a template id string, got {template!r}", code="invalid_template")
    return template


def check_datasets_trainable(names: list[str], task: str, read_dataset: DatasetReader) -> dict[str, str | None]:
    """Every dataset exists, is ready and has ``task`` data. Returns each one's training-data digest for ``task``."""
    digests: dict[str, str | None] = {}
    for name in names:
        dataset = read_dataset(name)
        if dataset is None:
            raise BadRequest(f"dataset {name!r} does not exist", code="unknown_dataset")
        status = dataset.get("status")
        if status != DatasetStatus.READY:
            raise Conflict(
                f"dataset {name!r} is not ready (status: {status}); retry when its registration has finished",
                code="dataset_not_ready",
            )
        dataset_tasks = dataset.get("tasks")
        if isinstance(dataset_tasks, list) and task not in dataset_tasks:
            raise BadRequest(
                f"dataset {name!r} has no {task} data (it has: {', '.join(dataset_tasks) or 'none'})",
                code="dataset_task_mismatch",
            )
        too_small = (dataset.get("too_small") or {}).get(task)
        if too_small and len(names) == 1:  # several datasets may add up: the workflow checks them together
            raise BadRequest(f"dataset {name!r} is too small to train {task}: {'; '.join(too_small['reasons'][:10])}",
                             code="dataset_too_small")
        digests[name] = (dataset.get("training_digests") or {}).get(task)
    return digests
