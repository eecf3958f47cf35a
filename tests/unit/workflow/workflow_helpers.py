"""What the workflow tests share: versions as the registry writes them, training outputs, recorded versions.
The fixtures (a model in moto, its datasets, published events) are in this folder's ``conftest.py``."""
from __future__ import annotations

import json
from typing import Any

from sightline import aws, contract, model_registry, workflow
from support import TEST_ENV

ARTIFACTS = TEST_ENV["ARTIFACT_BUCKET"]
CLASSES = ["cat", "dog"]


def add_version(model_id: str, version: int) -> None:
    """A retrain's version item, as the registry writes version 1."""
    model = model_registry.get_model(model_id)
    item = model_registry._version_item(
        model_id, version, template=model["template"], params=model["params"], datasets=model["datasets"],
        created=aws.utc_now(),
    )
    model_registry._table().put_item(Item=item)


def write_outputs(
    s3, model_id: str, version: int, score: float | None, *, primary: str = "accuracy",
    classes: list[str] = CLASSES, skip: tuple[str, ...] = (), metrics_extra: dict[str, Any] | None = None,
) -> None:
    """What the training container leaves under the version's output prefix."""
    prefix = contract.version_prefix(model_id, version)
    metrics = {"task": "classification", "primary_metric": primary, "validation_images": 2, "epochs": 3,
               "device": "cpu", "history": [{"epoch": 1, "train_loss": 0.5}],
               "onnx_check": {"images": 2, "max_abs_diff": 1e-6, "passed": True}, **(metrics_extra or {})}
    if score is not None:
        metrics[primary] = score
    labels = {
        "format": "sightline.labels/v1", "task": "classification", "template": "mobilenet_v3_small",
        "classes": classes,
        "input": {"name": "images", "width": 224, "height": 224, "batch": True,
                  "scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": {"logits": "logits"},
    }
    files = {"metrics.json": json.dumps(metrics).encode(), "labels.json": json.dumps(labels).encode(),
             "model.onnx": b"\x08\x07onnx-bytes"}
    for name, body in files.items():
        if name not in skip:
            s3.put_object(Bucket=ARTIFACTS, Key=prefix + name, Body=body)


def job_result(model_id: str, version: int) -> dict:
    """``$.job`` as the state machine's ResultSelector leaves it after submitJob.sync."""
    return {"JobId": f"job-{model_id}-{version}", "JobName": workflow.batch_job_name(model_id, version),
            "Status": "SUCCEEDED"}


def record(model_id: str, version: int) -> dict:
    return workflow.record_version({"model_id": model_id, "version": version, "job": job_result(model_id, version)})


def train(env, version: int, score: float, **kwargs: Any) -> dict:
    """A version that trained to ``score``, recorded."""
    if version > 1:
        add_version(env.model_id, version)
    write_outputs(env.s3, env.model_id, version, score, **kwargs)
    return record(env.model_id, version)
