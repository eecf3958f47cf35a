"""The first-start demo: a generated detection dataset, a short training run, and one prediction."""
from __future__ import annotations

import json
import logging
import random

from sightline.contract import DatasetStatus, ModelStatus
from sightline_local import synthetic
from sightline_local.client import SightlineClient
from sightline_local.stack import LocalStack

log = logging.getLogger("sightline.local.demo")

DATASET = "demo-shapes"


def run_demo(stack: LocalStack, epochs: int = 3) -> dict:
    client = SightlineClient(stack.config.api_url, stack.api_key)
    s3 = stack.client("s3")
    print(f"demo: uploading a generated detection dataset to s3://{stack.output('DataBucketName')}/datasets/{DATASET}/", flush=True)
    s3.put_object(Bucket=stack.output("DataBucketName"), Key=f"datasets/{DATASET}/shapes-coco.zip", Body=synthetic.coco_zip(images=24, size=128))
    dataset = client.wait_for(f"/v1/datasets/{DATASET}", lambda d: d.get("status") == DatasetStatus.READY, timeout=120)
    print(f"demo: dataset ready: {dataset['images']} images, classes {dataset['classes']}", flush=True)
    created = client.post("/v1/models", {"name": "demo detector", "task": "detection", "datasets": [DATASET], "params": {"epochs": epochs}})
    if created.status != 202:
        raise RuntimeError(f"demo: could not start training: {created.status} {created.body!r}")
    model_id = created.json()["model_id"]
    print(f"demo: training model {model_id} ({epochs} epochs; on a CPU this takes a minute or two)", flush=True)
    model = client.wait_for(f"/v1/models/{model_id}", lambda m: m["status"] != ModelStatus.TRAINING, timeout=1800, interval=5)
    if model["status"] != ModelStatus.READY:
        raise RuntimeError(f"demo: training failed: {model.get('failure_reason')}")
    version = client.get(f"/v1/models/{model_id}/versions/{model['serving_version']}").json()
    image, _ = synthetic.shapes_image(random.Random(7), 160, 120, count=2)
    prediction = client.post(f"/v1/models/{model_id}/predict?threshold=0.2", synthetic.encode(image, "JPEG"), content_type="image/jpeg")
    print(f"demo: model ready, metrics {json.dumps(version.get('metrics', {}).get('map_50'))} mAP@0.5; prediction:", flush=True)
    print(json.dumps(prediction.json(), indent=2), flush=True)
    return {"model_id": model_id, "prediction": prediction.json()}
