from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sightline.inference import ModelArtifactError, Predictor, PredictorCache
from predict_helpers import (
    CLASSIFIER_CLASSES,
    CLASSIFIER_INPUT,
    LOGIT_GAIN,
    classifier_labels,
    detector_labels,
    solid,
    upload_version,
)


def expected_classifier_scores(colour: tuple[int, int, int]) -> dict[str, float]:
    """What the channel classifier should say for a solid colour, worked out independently of the code."""
    mean, std, scale = CLASSIFIER_INPUT["mean"], CLASSIFIER_INPUT["std"], CLASSIFIER_INPUT["scale"]
    normalised = [(value / scale - m) / s for value, m, s in zip(colour, mean, std)]
    logits = np.array([normalised[2], normalised[1], normalised[0]]) * LOGIT_GAIN  # blue, green, red
    exp = np.exp(logits - logits.max())
    return dict(zip(CLASSIFIER_CLASSES, exp / exp.sum()))


@pytest.fixture
def classifier(classifier_onnx) -> Predictor:
    return Predictor(classifier_onnx, classifier_labels())


@pytest.fixture
def detector(detector_onnx) -> Predictor:
    return Predictor(detector_onnx, detector_labels())


def test_classifier_scores_are_the_softmax_best_first(classifier: Predictor):
    colour = (200, 120, 40)
    predictions = classifier.predict(solid(colour), threshold=0.0, max_results=5)
    expected = expected_classifier_scores(colour)
    assert [p["label"] for p in predictions] == ["red", "green", "blue"]
    for prediction in predictions:
        assert prediction["score"] == pytest.approx(expected[prediction["label"]], abs=1e-5)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)
    assert set(predictions[0]) == {"label", "score"}  # no box for a classifier


def test_classifier_threshold_and_max_results(classifier: Predictor):
    image = solid((40, 120, 200))
    expected = expected_classifier_scores((40, 120, 200))
    assert [p["label"] for p in classifier.predict(image, 0.0, 2)] == ["blue", "green"]
    middle = (expected["green"] + expected["red"]) / 2
    assert [p["label"] for p in classifier.predict(image, middle, 5)] == ["blue", "green"]
    assert classifier.predict(image, 1.0, 5) == []


def test_classifier_with_a_model_that_disagrees_with_its_labels_fails_loudly(classifier_onnx):
    predictor = Predictor(classifier_onnx, classifier_labels(classes=["only", "two"]))
    with pytest.raises(ModelArtifactError):
        predictor.predict(solid((1, 2, 3)), 0.0, 5)


@pytest.mark.parametrize(
    "labels",
    [
        classifier_labels(format="something/else"),
        classifier_labels(task="segmentation"),
        classifier_labels(classes=[]),
        classifier_labels(input={**CLASSIFIER_INPUT, "name": "pixels"}),
        classifier_labels(outputs={"logits": "probabilities"}),
    ],
    ids=["format", "task", "classes", "input-name", "output-name"],
)
def test_labels_that_do_not_fit_the_model_are_refused(classifier_onnx, labels: dict):
    with pytest.raises(ModelArtifactError):
        Predictor(classifier_onnx, labels)


def test_detections_are_rescaled_to_the_original_image_and_clipped(detector: Predictor):
    # Input is 64x32; the image is 300x100, so x scales by 300/64 and y by 100/32.
    sx, sy = 300 / 64, 100 / 32
    predictions = detector.predict(solid((255, 255, 255), (300, 100)), threshold=0.5, max_results=20)
    assert predictions == [
        {"label": "circle", "score": pytest.approx(0.9, abs=1e-5),
         "box": {"x_min": 0.0, "y_min": pytest.approx(4 * sy, abs=0.01),
                 "x_max": pytest.approx(24 * sx, abs=0.01), "y_max": pytest.approx(20 * sy, abs=0.01)}},
        {"label": "square", "score": pytest.approx(0.7, abs=1e-5),
         "box": {"x_min": pytest.approx(32 * sx, abs=0.01), "y_min": pytest.approx(8 * sy, abs=0.01),
                 "x_max": pytest.approx(60 * sx, abs=0.01), "y_max": pytest.approx(28 * sy, abs=0.01)}},
        {"label": "square", "score": pytest.approx(0.6, abs=1e-5),
         "box": {"x_min": pytest.approx(40 * sx, abs=0.01), "y_min": pytest.approx(16 * sy, abs=0.01),
                 "x_max": 300.0, "y_max": 100.0}},
    ]
    # background (label 0, score 0.95) and an unknown label id (score 0.8) never appear


def test_detections_are_in_the_image_whatever_its_shape(detector: Predictor):
    for size in [(300, 100), (50, 400), (64, 32), (7, 5)]:
        predictions = detector.predict(solid((255, 255, 255), size), threshold=0.0, max_results=100)
        assert len(predictions) == 4
        for prediction in predictions:
            box = prediction["box"]
            assert 0 <= box["x_min"] < box["x_max"] <= size[0]
            assert 0 <= box["y_min"] < box["y_max"] <= size[1]


def test_detection_threshold_and_max_results(detector: Predictor):
    white = solid((255, 255, 255), (300, 100))
    scores = [p["score"] for p in detector.predict(white, threshold=0.2, max_results=20)]
    assert scores == pytest.approx([0.9, 0.7, 0.6, 0.3], abs=1e-5)
    assert [p["score"] for p in detector.predict(white, 0.2, 2)] == pytest.approx([0.9, 0.7], abs=1e-5)
    assert detector.predict(white, 0.95, 20) == []


def test_scores_follow_the_image(detector: Predictor):
    # Mid grey halves every score: only the 0.9 candidate stays above 0.4.
    grey = solid((128, 128, 128), (300, 100))
    predictions = detector.predict(grey, threshold=0.4, max_results=20)
    assert [p["label"] for p in predictions] == ["circle"]
    assert predictions[0]["score"] == pytest.approx(0.9 * 128 / 255, abs=1e-4)


def test_a_detector_that_finds_nothing_answers_an_empty_list(detector: Predictor):
    # A black image: the model itself returns K = 0 boxes.
    assert detector.predict(solid((0, 0, 0), (300, 100)), threshold=0.0, max_results=20) == []


def test_a_predictor_loads_from_a_file_too(tmp_path, detector_onnx):
    path = tmp_path / "model.onnx"
    path.write_bytes(detector_onnx)
    predictor = Predictor(path, detector_labels())
    assert len(predictor.predict(solid((255, 255, 255), (30, 30)), 0.5, 20)) == 3


def version_of(resources, model_id: str, number: int, model: bytes, labels: dict) -> dict:
    return {"version": number, "artifacts": upload_version(resources, model_id, number, model, labels)}


def delete_artifacts(resources, version: dict) -> None:
    for key in version["artifacts"].values():
        resources.s3.delete_object(Bucket=resources.artifact_bucket, Key=key)


def test_the_cache_downloads_a_version_once(aws_resources, tmp_path, classifier_onnx):
    cache = PredictorCache(capacity=2, root=tmp_path)
    version = version_of(aws_resources, "mdl-a", 1, classifier_onnx, classifier_labels())
    first = cache.get("mdl-a", version)
    delete_artifacts(aws_resources, version)
    again = cache.get("mdl-a", version)
    assert again.predict(solid((255, 0, 0)), 0.0, 1)[0]["label"] == "red"
    assert again is first


def test_the_cache_keeps_the_most_recently_used_versions(aws_resources, tmp_path, classifier_onnx, detector_onnx):
    cache = PredictorCache(capacity=2, root=tmp_path)
    a = version_of(aws_resources, "mdl-a", 1, classifier_onnx, classifier_labels())
    b = version_of(aws_resources, "mdl-b", 3, detector_onnx, detector_labels())
    a2 = version_of(aws_resources, "mdl-a", 2, detector_onnx, detector_labels())
    cache.get("mdl-a", a)
    cache.get("mdl-b", b)
    cache.get("mdl-a", a)  # a is now the most recent
    assert cache.get("mdl-a", a2).task == "detection"  # a new version is a new entry: b goes
    assert len(list(tmp_path.rglob("model.onnx"))) == 2  # the evicted version's files left /tmp with it

    for version in (a, a2):
        delete_artifacts(aws_resources, version)
    assert cache.get("mdl-a", a).task == "classification"  # still cached: no download needed
    assert cache.get("mdl-b", b).task == "detection"  # evicted: downloaded again


def test_a_version_without_artifacts_is_a_server_fault(aws_resources, tmp_path):
    with pytest.raises(ModelArtifactError):
        PredictorCache(root=tmp_path).get("mdl-a", {"version": 1, "artifacts": {}})


def test_labels_json_is_read_from_the_bucket(aws_resources, tmp_path, classifier_onnx):
    version = version_of(aws_resources, "mdl-a", 1, classifier_onnx, classifier_labels(classes=["x", "y", "z"]))
    predictor = PredictorCache(root=tmp_path).get("mdl-a", version)
    assert predictor.predict(solid((255, 0, 0)), 0.0, 1)[0]["label"] == "z"


def test_rgba_and_grey_images_are_accepted(classifier: Predictor):
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    assert classifier.predict(rgba, 0.0, 1)[0]["label"] == "red"
    grey = classifier.predict(Image.new("L", (10, 10), 90), 0.0, 5)
    assert [p["score"] for p in grey] == pytest.approx([1 / 3] * 3, abs=1e-5)


def test_without_a_threshold_each_class_uses_its_assumed_threshold(classifier_onnx):
    image = solid((40, 120, 200))
    expected = expected_classifier_scores((40, 120, 200))  # blue > green > red
    # Blue's cutoff above its score, green's below: only green is answered; red has none, so the task's 0.0.
    thresholds = {"blue": min(1.0, expected["blue"] + 0.01), "green": expected["green"] / 2}
    predictor = Predictor(classifier_onnx, classifier_labels(thresholds=thresholds))
    assert [p["label"] for p in predictor.predict(image, None, 5)] == ["green", "red"]
    # A caller's threshold replaces every class's.
    assert [p["label"] for p in predictor.predict(image, 0.0, 5)] == ["blue", "green", "red"]
    # Trained before assumed thresholds: the task's default, which for a classifier ranks every class.
    assert len(Predictor(classifier_onnx, classifier_labels()).predict(image, None, 5)) == 3


def test_detector_boxes_are_cut_by_their_own_class_threshold(detector_onnx):
    image = Image.new("RGB", (128, 64), (255, 255, 255))
    everything = Predictor(detector_onnx, detector_labels()).predict(image, 0.0, 20)
    assert sorted(p["label"] for p in everything) == ["circle", "circle", "square", "square"]
    # square's cutoff between its two boxes' scores (0.7 and 0.6); circle's between its 0.9 and 0.3.
    predictor = Predictor(detector_onnx, detector_labels(thresholds={"circle": 0.2, "square": 0.65}))
    kept = predictor.predict(image, None, 20)
    assert [(p["label"], p["score"]) for p in kept] == [("circle", pytest.approx(0.9, abs=1e-6)),
                                                       ("square", pytest.approx(0.7, abs=1e-6)),
                                                       ("circle", pytest.approx(0.3, abs=1e-6))]
    # Without thresholds in labels.json, the detector default of 0.5 drops only the 0.3.
    assert len(Predictor(detector_onnx, detector_labels()).predict(image, None, 20)) == 3


@pytest.mark.parametrize("thresholds", [{"blue": 1.5}, {"blue": "high"}, ["blue"]])
def test_bad_thresholds_in_labels_fail_loudly(classifier_onnx, thresholds):
    with pytest.raises(ModelArtifactError, match="threshold"):
        Predictor(classifier_onnx, classifier_labels(thresholds=thresholds))
