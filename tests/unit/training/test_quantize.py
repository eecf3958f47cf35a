"""params.quantize int8: the template parameter, the job's quantized export and its fp32-vs-int8 rule, and the
predict function serving the quantized model. Solid colours (conftest.colour_dataset) train in seconds."""
from __future__ import annotations

import json
import random
from pathlib import Path

import onnx
import pytest

from sightline.errors import BadRequest
from sightline.inference import Predictor
from sightline.templates import get_template
from sightline_training import quantize
from sightline_training.__main__ import main
from sightline_training.manifest import ManifestItem
from training_helpers import PRIMARIES, colour_image, run

COLOUR_PARAMS = {"epochs": 10, "image_size": 32, "batch_size": 16, "learning_rate": 0.005, "augment": 0.0}


@pytest.mark.parametrize("template_id, params, message", [
    ("mobilenet_v3_small", {"quantize": "int4"}, "params.quantize must be one of none, int8, got 'int4'"),
    ("resnet50_multilabel", {"quantize": True}, "params.quantize must be one of none, int8, got True"),
    ("mobilenet_v3_small", {"quantize_tolerance": 101},
     "params.quantize_tolerance must be between -100.0 and 100.0, got 101.0"),
    ("ssdlite320_mobilenet_v3_large", {"quantize": "int8"},
     "params.quantize must be one of none, got 'int8': INT8 quantization is offered for classifier templates only"),
    ("fasterrcnn_mobilenet_v3_large_fpn", {"quantize_tolerance": 2.0},
     "unknown params for template fasterrcnn_mobilenet_v3_large_fpn: quantize_tolerance"),
])
def test_bad_quantize_params_are_refused_by_name(template_id, params, message):
    with pytest.raises(BadRequest) as raised:
        get_template(template_id).resolve_params(params)
    assert raised.value.code == "invalid_params" and message in raised.value.message


def test_quantize_defaults_to_none_and_accepts_int8():
    template = get_template("efficientnet_b0")
    assert (template.defaults()["quantize"], template.defaults()["quantize_tolerance"]) == ("none", 1.0)
    assert template.resolve_params({"quantize": "int8", "quantize_tolerance": -1})["quantize_tolerance"] == -1.0
    assert template.describe()["params"]["quantize"]["enum"] == ["none", "int8"]
    assert get_template("ssdlite320_mobilenet_v3_large").describe()["params"]["quantize"]["enum"] == ["none"]


def test_the_job_refuses_int8_for_a_detector_before_training(local_manifest, tmp_path, capsys):
    manifest = local_manifest("detection")
    assert run(manifest, tmp_path, "ssdlite320_mobilenet_v3_large", {"quantize": "int8"}) == 2
    assert "classifier templates only" in capsys.readouterr().err


def test_the_rule_publishes_int8_within_the_tolerance_only():
    def decision(fp32: float, int8: float, tolerance: float) -> quantize.Decision:
        return quantize.Decision("accuracy", tolerance, {"accuracy": fp32}, {"accuracy": int8}, 8)

    assert decision(0.90, 0.89, 1.0).published == "int8"  # one point: at the tolerance
    assert decision(0.90, 0.885, 1.0).published == "fp32"
    assert decision(0.90, 0.90, -1.0).published == "fp32"  # a negative tolerance asks int8 to gain
    lost = decision(0.90, 0.87, 1.0).to_dict()
    assert (lost["published"], lost["points_lost"]) == ("fp32", 3.0)
    assert lost["reason"] == ("int8 loses 3 points of accuracy on the validation split, more than "
                              "quantize_tolerance 1")
    assert "reason" not in decision(0.5, 0.6, 0.0).to_dict()


def test_a_failed_quantization_publishes_fp32_with_its_reason(tmp_path):
    # Not an ONNX model: onnxruntime's quantizer fails on it, and the trained model still publishes in fp32.
    labels = {"format": "sightline.labels/v1", "task": "classification", "classes": ["a", "b"],
              "input": {"name": "images", "width": 8, "height": 8, "batch": True, "scale": 255.0,
                        "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}}
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a graph")
    colour_image(("red",), random.Random(0), 8).save(tmp_path / "red.png")
    item = ManifestItem("red", "red.png", "train", 0, ())
    decision = quantize.quantize_and_choose(broken, tmp_path / "int8.onnx", labels, None, [item], [],
                                            {"red": tmp_path / "red.png"}, "accuracy", 1.0, seed=0)
    document = decision.to_dict()
    assert (document["published"], document["points_lost"], document["calibration_images"]) == ("fp32", None, 1)
    assert document["reason"].startswith("quantization failed: ") and "ValueError" not in document["reason"]


def outputs(tmp_path: Path, name: str) -> tuple[dict, dict, dict, Path]:
    out = tmp_path / name / "out"
    return (json.loads((out / "labels.json").read_text()), json.loads((out / "metrics.json").read_text()),
            json.loads((out / "card.json").read_text()), out / "model.onnx")


def test_an_int8_run_publishes_a_quantized_model_the_predictor_serves(colour_manifest, tmp_path):
    manifest = colour_manifest("classification")  # three colours and negatives: a background output too
    params = {**COLOUR_PARAMS, "quantize": "int8", "quantize_tolerance": 100.0}
    assert run(manifest, tmp_path, "mobilenet_v3_small", params) == 0
    labels, metrics, card, model = outputs(tmp_path, "job")

    assert labels["precision"] == card["precision"] == "int8"
    ops = {node.op_type for node in onnx.load(str(model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    recorded = metrics["quantization"]
    assert recorded["published"] == "int8" and recorded["requested"] == "int8"
    assert recorded["primary_metric"] == "accuracy" and recorded["tolerance_points"] == 100.0
    assert recorded["calibration_images"] == 16  # every training image (fewer than CALIBRATION_IMAGES)
    for precision in ("fp32", "int8"):
        assert 0.0 <= recorded[precision]["accuracy"] <= 1.0 and recorded[precision]["ms_per_image"] > 0
    assert recorded["points_lost"] == pytest.approx(
        100 * (recorded["fp32"]["accuracy"] - recorded["int8"]["accuracy"]), abs=1e-6)
    # The fp32 ONNX model measured through the predict function scores what training measured in PyTorch.
    assert recorded["fp32"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert recorded["quantized_ops"]["QuantizeLinear"] > 0 and card["quantization"] == recorded

    # The predict function loads the quantized model unchanged and tells the colours apart as fp32 did.
    predictor = Predictor(model, labels)
    rng = random.Random(3)  # images the model never saw
    answers = {name: predictor.predict(colour_image((name,), rng, 32), None, 1) for name in PRIMARIES}
    assert recorded["int8"]["accuracy"] >= 0.75
    assert sum(bool(answer) and answer[0]["label"] == name for name, answer in answers.items()) >= 2


def test_int8_that_does_not_gain_enough_is_not_published(colour_manifest, tmp_path):
    # A tolerance of -100 points asks int8 to beat fp32 by the whole metric: never met, so fp32 is published.
    manifest = colour_manifest("multilabel")
    params = {**COLOUR_PARAMS, "epochs": 2, "quantize": "int8", "quantize_tolerance": -100.0}
    assert run(manifest, tmp_path, "mobilenet_v3_small_multilabel", params) == 0
    labels, metrics, card, model = outputs(tmp_path, "job")
    recorded = metrics["quantization"]
    assert recorded["published"] == "fp32" and labels["precision"] == card["precision"] == "fp32"
    assert recorded["primary_metric"] == "mean_average_precision"
    assert "more than quantize_tolerance -100" in recorded["reason"]
    assert not {node.op_type for node in onnx.load(str(model)).graph.node} & quantize.QUANTIZED_OPS
    Predictor(model, labels)  # the published fp32 model still serves

    # The quantize params are not part of the checkpoint's job: the finished checkpoint only exports again,
    # this time under a tolerance of 100 points, which any int8 model meets.
    assert main(["--manifest", str(manifest), "--output", str(tmp_path / "again" / "out"),
                 "--checkpoint", str(tmp_path / "job" / "checkpoints"), "--template", "mobilenet_v3_small_multilabel",
                 "--params", json.dumps({**params, "quantize_tolerance": 100.0}),
                 "--work-dir", str(tmp_path / "again" / "work"), "--workers", "0"]) == 0
    labels, metrics, _, model = outputs(tmp_path, "again")
    assert labels["precision"] == "int8" and metrics["epochs"] == 2
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in onnx.load(str(model)).graph.node}
