"""Multi-label models (one sigmoid per class) and classifiers trained with negatives (a background logit that is
never reported), through the Predictor and the predict request, on tiny real ONNX graphs."""
from __future__ import annotations

import numpy as np
import pytest

from sightline.inference import ModelArtifactError, Predictor
from sightline.predict_request import predict_request
from predict_helpers import (
    CLASSIFIER_CLASSES,
    CLASSIFIER_INPUT,
    LOGIT_GAIN,
    build_classifier,
    classifier_labels,
    encode,
    multilabel_labels,
    solid,
)

YELLOW, DARK, WHITE, RED = (240, 230, 20), (10, 20, 15), (255, 255, 255), (250, 40, 10)


def channel_logits(colour: tuple[int, int, int]) -> np.ndarray:
    """The channel classifier's logits (blue, green, red), worked out independently of the code."""
    normalised = [(v / CLASSIFIER_INPUT["scale"] - m) / s
                  for v, m, s in zip(colour, CLASSIFIER_INPUT["mean"], CLASSIFIER_INPUT["std"])]
    return np.array([normalised[2], normalised[1], normalised[0]]) * LOGIT_GAIN


@pytest.fixture
def multilabel() -> Predictor:
    return Predictor(build_classifier(), multilabel_labels())


@pytest.fixture
def with_background() -> Predictor:
    return Predictor(build_classifier(background=True), classifier_labels(background=True))


def test_a_multilabel_model_answers_every_class_at_the_threshold_with_independent_scores(multilabel: Predictor):
    predictions = multilabel.predict(solid(YELLOW), threshold=0.5, max_results=100)
    assert sorted(p["label"] for p in predictions) == ["green", "red"]
    expected = dict(zip(CLASSIFIER_CLASSES, 1 / (1 + np.exp(-channel_logits(YELLOW)))))
    for prediction in predictions:
        assert prediction["score"] == pytest.approx(expected[prediction["label"]], abs=1e-5)
        assert set(prediction) == {"label", "score"}
    assert predictions[0]["score"] >= predictions[1]["score"]  # best first
    everything = multilabel.predict(solid(WHITE), threshold=0.5, max_results=100)
    assert len(everything) == 3 and sum(p["score"] for p in everything) > 2.9  # not a softmax


def test_a_multilabel_model_answers_nothing_for_an_image_of_no_class(multilabel: Predictor):
    assert multilabel.predict(solid(DARK), threshold=0.5, max_results=100) == []
    ranked = multilabel.predict(solid(DARK), threshold=0.0, max_results=2)
    assert len(ranked) == 2 and all(p["score"] < 0.01 for p in ranked)


def test_a_background_logit_takes_its_share_and_is_never_reported(with_background: Predictor):
    red = with_background.predict(solid(RED), threshold=0.0, max_results=5)
    assert [p["label"] for p in red] == ["red", "green", "blue"]  # no fourth, unnamed class
    logits = np.append(channel_logits(RED), -channel_logits(RED).mean())
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert [p["score"] for p in red] == pytest.approx([softmax[2], softmax[1], softmax[0]], abs=1e-5)
    assert sum(p["score"] for p in red) == pytest.approx(1 - softmax[3], abs=1e-5)

    assert with_background.predict(solid(DARK), threshold=0.5, max_results=5) == []
    dark = with_background.predict(solid(DARK), threshold=0.0, max_results=5)
    assert sorted(p["label"] for p in dark) == sorted(CLASSIFIER_CLASSES)
    assert sum(p["score"] for p in dark) < 0.01  # "none" took the rest


@pytest.mark.parametrize(
    ("model", "labels", "message"),
    [
        (False, classifier_labels(background=True), "3 logits for 3 classes and the background"),
        (True, classifier_labels(), "4 logits for 3 classes"),
    ],
)
def test_a_background_that_the_model_and_labels_disagree_on_fails_loudly(model, labels, message):
    predictor = Predictor(build_classifier(background=model), labels)
    with pytest.raises(ModelArtifactError, match=message):
        predictor.predict(solid(DARK), 0.0, 5)


@pytest.mark.parametrize("labels", [multilabel_labels(background=True), classifier_labels(background="yes")],
                         ids=["multilabel", "not-a-boolean"])
def test_a_background_only_a_classifier_can_have_is_refused(labels):
    with pytest.raises(ModelArtifactError, match="background"):
        Predictor(build_classifier(), labels)


def test_the_predict_request_defaults_a_multilabel_model_to_threshold_half(seed_model):
    model_id = seed_model(build_classifier(), multilabel_labels())
    answer = predict_request(model_id, encode(solid(YELLOW)), "image/png", {})
    assert answer["task"] == "multilabel"
    assert sorted(p["label"] for p in answer["predictions"]) == ["green", "red"]
    assert predict_request(model_id, encode(solid(DARK)), "image/png", {})["predictions"] == []
    low = predict_request(model_id, encode(solid(DARK)), "image/png", {"threshold": "0"})
    assert len(low["predictions"]) == 3
