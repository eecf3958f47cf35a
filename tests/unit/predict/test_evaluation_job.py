"""``python -m sightline_training evaluate``: a tiny real ONNX model evaluated on a dataset manifest in moto S3,
through the predict function's own ``Predictor``; class-name mismatches reported, never crashed on."""
from __future__ import annotations

import json

import pytest

from predict_helpers import (
    build_classifier,
    build_detector,
    classifier_labels,
    detector_labels,
    encode,
    multilabel_labels,
    solid,
    upload_version,
)

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0), "purple": (128, 0, 128),
           "white": (255, 255, 255), "black": (0, 0, 0)}


def image_item(resources, name: str, colour: str, **labels) -> dict:
    key = f"images/{name}.png"
    resources.s3.put_object(Bucket=resources.artifact_bucket, Key=key, Body=encode(solid(COLOURS[colour])))
    return {"id": name, "image": {"bucket": resources.artifact_bucket, "key": key}, "width": 30, "height": 20,
            "split": "validation", **labels}


def write_manifest(resources, task: str, classes: list[str], items: list[dict]) -> str:
    key = "evaluations/e1/manifest.json"
    document = {"format": "sightline.manifest/v1", "task": task, "datasets": ["colours"], "classes": classes,
                "items": items}
    resources.s3.put_object(Bucket=resources.artifact_bucket, Key=key, Body=json.dumps(document))
    return f"s3://{resources.artifact_bucket}/{key}"


def run_job(resources, manifest_uri: str, model_id: str = "m1") -> tuple[int, dict]:
    from sightline_training.evaluate import main

    bucket = resources.artifact_bucket
    code = main([], {"SIGHTLINE_EVALUATION_MANIFEST_URI": manifest_uri,
                     "SIGHTLINE_EVALUATION_MODEL_URI": f"s3://{bucket}/models/{model_id}/v1/",
                     "SIGHTLINE_EVALUATION_OUTPUT_URI": f"s3://{bucket}/evaluations/e1/"})
    name = "evaluation.json" if code == 0 else "failure.json"
    body = resources.s3.get_object(Bucket=bucket, Key=f"evaluations/e1/{name}")["Body"].read()
    return code, json.loads(body)


def test_a_classifier_is_measured_and_unknown_classes_are_counted(aws_resources):
    upload_version(aws_resources, "m1", 1, build_classifier(), classifier_labels())
    items = [image_item(aws_resources, f"{colour}-{n}", colour, label=colour)
             for colour in ("blue", "green", "purple") for n in range(2)]
    code, report = run_job(aws_resources, write_manifest(aws_resources, "classification",
                                                         ["blue", "green", "purple"], items))
    assert code == 0, report
    assert report["format"] == "sightline.evaluation/v1" and report["task"] == "classification"
    # The model knows red, the dataset does not; the dataset has purple, the model does not.
    assert report["class_mismatch"] == {"dataset_only": ["purple"], "model_only": ["red"]}
    assert report["images"] == {"total": 6, "evaluated": 4, "unknown_class": 2, "partly_unknown": 0}
    assert report["metrics"]["accuracy"] == 1.0
    assert report["per_class"]["blue"]["support"] == 2 and report["per_class"]["red"]["support"] == 0
    assert report["confusion_matrix"]["labels"] == ["blue", "green", "red", "(none)"]
    assert report["confusion_matrix"]["rows"][0] == [2, 0, 0, 0]


def test_a_multilabel_model_keeps_the_labels_it_knows(aws_resources):
    upload_version(aws_resources, "m1", 1, build_classifier(), multilabel_labels())
    items = [image_item(aws_resources, "blue", "blue", labels=["blue"]),
             image_item(aws_resources, "white", "white", labels=["blue", "glow", "green", "red"]),
             image_item(aws_resources, "black", "black", labels=[]),
             image_item(aws_resources, "glow", "purple", labels=["glow"])]
    code, report = run_job(aws_resources, write_manifest(aws_resources, "multilabel",
                                                         ["blue", "glow", "green", "red"], items))
    assert code == 0, report
    assert report["class_mismatch"] == {"dataset_only": ["glow"], "model_only": []}
    assert report["images"] == {"total": 4, "evaluated": 3, "unknown_class": 1, "partly_unknown": 1}
    assert set(report["metrics"]) == {"mean_average_precision", "f1_micro", "f1_macro"}


def test_a_detector_is_measured_with_cocoeval(aws_resources):
    upload_version(aws_resources, "m1", 1, build_detector(), detector_labels())
    box = {"label": "circle", "x_min": 0.0, "y_min": 2.5, "x_max": 11.25, "y_max": 12.5}
    items = [image_item(aws_resources, "white", "white", boxes=[box]),
             image_item(aws_resources, "hex", "white", boxes=[{**box, "label": "hexagon"}])]
    code, report = run_job(aws_resources, write_manifest(aws_resources, "detection", ["circle", "hexagon"], items))
    assert code == 0, report
    assert report["class_mismatch"] == {"dataset_only": ["hexagon"], "model_only": ["square"]}
    assert report["images"]["unknown_class"] == 1 and report["images"]["evaluated"] == 1
    assert {"map_50_95", "map_50"} <= set(report["metrics"])
    assert report["per_class"]["circle"]["support"] == 1


@pytest.mark.parametrize("problem", ["no model", "no known class"])
def test_failures_leave_their_reason(aws_resources, problem):
    if problem == "no model":
        items = [image_item(aws_resources, "blue", "blue", label="blue")]
        code, failure = run_job(aws_resources, write_manifest(aws_resources, "classification", ["blue"], items))
        assert code == 2 and "model" in failure["reason"]
    else:
        upload_version(aws_resources, "m1", 1, build_classifier(), classifier_labels())
        items = [image_item(aws_resources, "purple", "purple", label="purple")]
        code, failure = run_job(aws_resources, write_manifest(aws_resources, "classification", ["purple"], items))
        assert code == 2 and "none of the dataset's 1 images" in failure["reason"]
