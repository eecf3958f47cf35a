"""The first-start demo: a generated detection dataset, a short training run, and one prediction."""
from __future__ import annotations

import json
import logging
import random
import tempfile
from pathlib import Path

from sightline_client import SightlineClient
from sightline_local import synthetic
from sightline_local.stack import LocalStack

log = logging.getLogger("sightline.local.demo")

DATASET = "demo-shapes"


def run_demo(stack: LocalStack, epochs: int = 3) -> dict:
    """Upload, train and predict through the API with ``sightline_client``, as a user's program would
    (the same steps as ``sightline datasets upload``, ``sightline models create --wait`` and ``sightline predict``).
    Errors are raised as ``sightline_client`` exceptions."""
    client = SightlineClient(stack.config.api_url, stack.api_key, timeout=120)
    print(f"demo: uploading a generated detection dataset to {DATASET} through the API's presigned URLs", flush=True)
    with tempfile.TemporaryDirectory(prefix="sightline-demo-") as folder:
        archive = Path(folder) / "shapes-coco.zip"
        archive.write_bytes(synthetic.coco_zip(images=24, size=128))
        dataset = client.upload_dataset(DATASET, archive, timeout=120).dataset_state or {}
    if dataset.get("status") != "ready":
        raise RuntimeError(f"demo: the dataset did not register: {dataset.get('status')}, {dataset.get('issues')}")
    print(f"demo: dataset ready: {dataset['images']} images, classes {dataset['classes']}", flush=True)
    created = client.create_model("demo detector", "detection", [DATASET], params={"epochs": epochs})
    model_id = created["model_id"]
    print(f"demo: training model {model_id} ({epochs} epochs; on a CPU this takes a minute or two)", flush=True)
    version = client.wait_for_version(model_id, created["version"], timeout=1800)
    image, _ = synthetic.shapes_image(random.Random(7), 160, 120, count=2)
    prediction = client.predict(model_id, synthetic.encode(image, "JPEG"), threshold=0.2)
    print(f"demo: model ready, metrics {json.dumps((version.get('metrics') or {}).get('map_50'))} mAP@0.5; prediction:", flush=True)
    print(json.dumps(prediction, indent=2), flush=True)
    return {"model_id": model_id, "prediction": prediction}
