"""The job as Batch runs it: everything from the SIGHTLINE_* environment, every object in (moto's) S3."""
from __future__ import annotations

import io
import json

import numpy as np
import onnxruntime
from PIL import Image

from sightline import imaging
from sightline_training.__main__ import main

MODEL_PREFIX = "models/m-1/v000001/"


def upload_dataset(resources, make_dataset, task: str = "classification") -> tuple[str, dict]:
    dataset = make_dataset(task, count=12)
    for item in dataset.document["items"]:
        key = f"images/{item['id'][:2]}/{item['id']}.png"
        resources.s3.put_object(Bucket=resources.artifact_bucket, Key=key, Body=dataset.files[item["id"]])
        item["image"] = {"bucket": resources.artifact_bucket, "key": key}
    manifest_key = "manifests/m-1/v000001/manifest.json"
    resources.s3.put_object(Bucket=resources.artifact_bucket, Key=manifest_key,
                            Body=json.dumps(dataset.document).encode())
    return manifest_key, dataset.document


def job_environment(resources, manifest_key: str, params: dict) -> dict[str, str]:
    bucket = resources.artifact_bucket
    return {
        "SIGHTLINE_MANIFEST_URI": f"s3://{bucket}/{manifest_key}",
        "SIGHTLINE_OUTPUT_URI": f"s3://{bucket}/{MODEL_PREFIX}",
        "SIGHTLINE_CHECKPOINT_URI": f"s3://{bucket}/checkpoints/m-1/v000001/",
        "SIGHTLINE_TEMPLATE": "mobilenet_v3_small",
        "SIGHTLINE_PARAMS": json.dumps(params),
    }


def test_job_reads_and_writes_s3_through_the_environment(aws_resources, make_dataset, tmp_path):
    manifest_key, document = upload_dataset(aws_resources, make_dataset)
    environ = job_environment(aws_resources, manifest_key, {"epochs": 1, "image_size": 64, "batch_size": 4})

    assert main(["--work-dir", str(tmp_path / "work"), "--workers", "0"], environ=environ) == 0

    s3, bucket = aws_resources.s3, aws_resources.artifact_bucket
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="models/")["Contents"]}
    assert listed == {MODEL_PREFIX + name for name in ("model.onnx", "labels.json", "card.json", "metrics.json",
                                                               "progress.json", "pr_curves.png",
                                                               "confusion_matrix.png", "training_curves.png",
                                                               "validation_samples.png")}
    assert s3.head_object(Bucket=bucket, Key="checkpoints/m-1/v000001/checkpoint.pt")["ContentLength"] > 0
    labels_object = s3.get_object(Bucket=bucket, Key=MODEL_PREFIX + "labels.json")
    assert labels_object["ContentType"] == "application/json"
    assert json.loads(labels_object["Body"].read())["classes"] == ["circle", "square"]
    metrics = json.loads(s3.get_object(Bucket=bucket, Key=MODEL_PREFIX + "metrics.json")["Body"].read())
    assert metrics["primary_metric"] == "accuracy" and metrics["onnx_check"]["passed"] is True

    graph = s3.get_object(Bucket=bucket, Key=MODEL_PREFIX + "model.onnx")["Body"].read()
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    item = next(i for i in document["items"] if i["split"] == "validation")
    image = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=item["image"]["key"])["Body"].read()))
    labels = json.loads(s3.get_object(Bucket=bucket, Key=MODEL_PREFIX + "labels.json")["Body"].read())
    (logits,) = session.run(["logits"], {"images": imaging.to_tensor(image, imaging.InputSpec.from_labels(labels))})
    assert logits.shape == (1, 2) and np.isfinite(logits).all()


def test_a_missing_image_fails_before_training(aws_resources, make_dataset, tmp_path, capsys):
    manifest_key, document = upload_dataset(aws_resources, make_dataset)
    missing = document["items"][3]
    aws_resources.s3.delete_object(Bucket=aws_resources.artifact_bucket, Key=missing["image"]["key"])
    environ = job_environment(aws_resources, manifest_key, {"epochs": 1, "image_size": 64})

    assert main(["--work-dir", str(tmp_path / "work"), "--workers", "0"], environ=environ) == 2
    assert capsys.readouterr().err == (f"manifest item {missing['id']}: image not found: "
                                       f"s3://{aws_resources.artifact_bucket}/{missing['image']['key']}\n")
    assert "Contents" not in aws_resources.s3.list_objects_v2(Bucket=aws_resources.artifact_bucket,
                                                               Prefix="checkpoints/")
