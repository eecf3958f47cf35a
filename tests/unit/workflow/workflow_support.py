"""Shared set-up of the workflow tests: a model in moto, a fake manifest builder, training outputs, events."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sightline import aws, contract, events, model_registry, templates, workflow


from support import TEST_ENV, load_event  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = TEST_ENV["ARTIFACT_BUCKET"]
CLASSES = ["cat", "dog"]


def manifest(classes: list[str] = CLASSES, marker: str = "first") -> dict:
    return {
        "format": "sightline.manifest/v1",
        "task": "classification",
        "datasets": ["pets"],
        "classes": classes,
        "created_at": "2026-11-22T05:00:00Z",
        "marker": marker,  # tells snapshots apart in the tests
        "items": [
            {"id": f"{i:064x}", "image": {"bucket": ARTIFACTS, "key": f"images/00/{i:064x}.jpg"},
             "width": 64, "height": 48, "split": "validation" if i % 2 else "train", "label": classes[i % len(classes)]}
            for i in range(4)
        ],
    }


class FakeManifestBuilder:
    """Stands in for ``sightline.datasets.manifest`` (another part of the package): records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str, float]] = []
        self.result: Any = manifest()

    def build_manifest(self, datasets: list[str], task: str, validation_fraction: float) -> dict:
        self.calls.append((datasets, task, validation_fraction))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result() if callable(self.result) else self.result


@pytest.fixture
def workflow_env(aws_resources, monkeypatch):
    builder = FakeManifestBuilder()
    monkeypatch.setattr(workflow, "build_manifest", builder.build_manifest)
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: published.append((detail_type, detail)))
    model, _ = model_registry.create_model(
        name="pets", task="classification", datasets=["pets"], template="mobilenet_v3_small",
        params=templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 3}),
    )
    return SimpleNamespace(
        s3=aws_resources.s3, table=aws_resources.table, builder=builder, published=published,
        model_id=model["model_id"],
    )


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
    classes: list[str] = CLASSES, skip: tuple[str, ...] = (),
) -> None:
    """What the training container leaves under the version's output prefix."""
    prefix = contract.version_prefix(model_id, version)
    metrics = {"task": "classification", "primary_metric": primary, "validation_images": 2, "epochs": 3,
               "device": "cpu", "history": [{"epoch": 1, "train_loss": 0.5}],
               "onnx_check": {"images": 2, "max_abs_diff": 1e-6, "passed": True}}
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


class LambdaContext:
    function_name = "sightline-test-training-steps"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sightline-test-training-steps"
    aws_request_id = "1f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def load_training_steps():
    """functions/training_steps/app.py under a name of its own (every function's module is called app)."""
    path = REPO / "functions" / "training_steps" / "app.py"
    spec = importlib.util.spec_from_file_location("training_steps_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
