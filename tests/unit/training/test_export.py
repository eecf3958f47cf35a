from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sightline import imaging
from sightline.templates import get_template
from sightline_training import data, models
from sightline_training import export
from sightline_training.export import Detections, compare_detections, labels_document

LIMITS = {"side": 100, "score_threshold": 0.001, "nms_threshold": 0.55, "max_detections": 300}


def detections(rows: list[tuple[int, float, list[float]]]) -> Detections:
    return Detections(np.array([r[2] for r in rows], dtype=np.float32).reshape(-1, 4),
                      np.array([r[1] for r in rows], dtype=np.float32),
                      np.array([r[0] for r in rows], dtype=np.int64))


def test_identical_detections_in_another_order_match():
    rows = [(1, 0.9, [0, 0, 10, 10]), (2, 0.5, [50, 50, 70, 80]), (1, 0.2, [30, 30, 40, 40])]
    worst, problems = compare_detections(detections(rows), detections(rows[::-1]), **LIMITS)
    assert (worst, problems) == (0.0, [])


def test_float_noise_is_within_tolerance():
    expected = detections([(1, 0.9, [0, 0, 10, 10])])
    actual = detections([(1, 0.9 + 2e-7, [0, 0, 10.000_01, 10])])
    worst, problems = compare_detections(expected, actual, **LIMITS)
    assert problems == [] and 0 < worst < 1e-4


def test_both_empty_agree():
    assert compare_detections(detections([]), detections([]), **LIMITS) == (0.0, [])


def test_zero_against_one_detection_is_a_mismatch():
    _, problems = compare_detections(detections([]), detections([(1, 0.8, [0, 0, 10, 10])]), **LIMITS)
    assert problems and "only from onnxruntime" in problems[0]


def test_a_tie_broken_the_other_way_by_nms_is_accepted():
    # Two overlapping boxes with the same score: NMS keeps whichever its sort puts first.
    first, second = [0, 0, 10, 10], [1, 0, 11, 10]
    worst, problems = compare_detections(detections([(1, 0.5, first), (2, 0.9, [50, 50, 60, 60])]),
                                         detections([(1, 0.5, second), (2, 0.9, [50, 50, 60, 60])]), **LIMITS)
    assert problems == []


def test_shifted_boxes_differing_labels_and_scores_fail():
    expected = detections([(1, 0.9, [0, 0, 10, 10]), (2, 0.4, [40, 40, 60, 60])])
    shifted = detections([(1, 0.9, [2, 0, 12, 10]), (2, 0.4, [40, 40, 60, 60])])
    relabelled = detections([(2, 0.9, [0, 0, 10, 10]), (2, 0.4, [40, 40, 60, 60])])
    rescored = detections([(1, 0.8, [0, 0, 10, 10]), (2, 0.4, [40, 40, 60, 60])])
    for actual in (shifted, relabelled, rescored):
        _, problems = compare_detections(expected, actual, **LIMITS)
        assert problems, actual


def test_detections_at_the_score_threshold_may_differ():
    expected = detections([(1, 0.9, [0, 0, 10, 10]), (1, 0.00105, [40, 40, 60, 60])])
    actual = detections([(1, 0.9, [0, 0, 10, 10])])
    assert compare_detections(expected, actual, **LIMITS)[1] == []


@pytest.mark.parametrize("template_id", ["mobilenet_v3_small", "mobilenet_v3_small_multilabel",
                                         "ssdlite320_mobilenet_v3_large"])
def test_labels_json_input_feeds_the_model_what_validation_fed_it(template_id):
    # The predict function builds its input from labels.json with sightline.imaging; evaluation used the
    # validation transform. They must agree, or the measured metrics are not the served model's.
    template = get_template(template_id)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    labels = labels_document(template, ["a", "b"], models.input_spec(template, 48))
    spec = imaging.InputSpec.from_labels(labels)
    if template.task in models.CLASSIFIER_TASKS:
        transform = data.classification_transforms(48, train=False)
    else:
        transform = data.detection_transforms(48, train=False)
    expected = transform(image)
    actual = torch.from_numpy(imaging.to_tensor(image, spec))
    if spec.batch:
        actual = actual[0]
    assert actual.shape == expected.shape == (3, 48, 48)
    assert torch.allclose(actual, expected, atol=1e-5)


class _LargeLogits(torch.nn.Module):
    """A classifier whose logits are in the thousands, as a from-scratch model's can be."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(16, 4)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
            self.head.weight.mul_(scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _exported(model: torch.nn.Module, tmp_path) -> object:
    path = tmp_path / "model.onnx"
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    return export.open_session(path)


def test_a_correct_export_passes_whatever_the_size_of_its_logits(tmp_path):
    model = _LargeLogits(scale=2000.0)
    inputs = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    check = export.verify_classifier(_exported(model, tmp_path), model, inputs, [t[None].numpy() for t in inputs])
    with torch.inference_mode():
        magnitude = float(model(torch.stack(inputs)).abs().max())
    assert magnitude > 1000
    assert check.passed, check.reason
    assert check.max_rel_diff <= export.LOGITS_RELATIVE_TOLERANCE


def test_logits_of_other_inputs_fail_the_check(tmp_path):
    model = _LargeLogits(scale=1.0)
    inputs = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    wrong_preprocessing = [(t * 0.5)[None].numpy() for t in inputs]  # e.g. scaled by 1/510 instead of 1/255
    check = export.verify_classifier(_exported(model, tmp_path), model, inputs, wrong_preprocessing)
    assert not check.passed and "differ" in check.reason


def test_logit_comparison_scales_with_the_values_and_checks_the_ranking():
    expected = np.array([[1500.0, -300.0, 20.0], [0.2, 0.1, -0.3]])
    # 0.0013 off at a scale of 1500 is float noise (this once failed an absolute 1e-3 tolerance).
    assert export.compare_logits(expected, expected + np.array([[0.0013, 0, 0], [0, 0, 0]]))[2] == []
    # 0.002 off at a scale of 1 is not.
    assert export.compare_logits(expected, expected + np.array([[0, 0, 0], [0, 0.002, 0]]))[2]
    # A swap of the top two classes fails even when the values are close.
    swapped = expected.copy()
    swapped[1, [0, 1]] = swapped[1, [1, 0]]
    problems = export.compare_logits(expected, swapped, tolerance=0.05)[2]
    assert any("ranks class 1 first" in problem for problem in problems)
    # Tied top classes may come out in either order.
    tied = np.array([[2.0, 2.0, -1.0]])
    assert export.compare_logits(tied, tied[:, [1, 0, 2]])[2] == []
    assert export.compare_logits(expected, np.full_like(expected, np.nan))[2]


def test_a_multilabel_answer_at_the_threshold_cannot_change_within_the_logit_tolerance():
    # Logits within the margin of PyTorch's are on the same side of 0 (sigmoid 0.5) unless PyTorch's own logit is
    # within the margin of 0, so the scaled comparison covers multi-label decisions: a crossing is a difference.
    expected = np.array([[1500.0, -300.0, 20.0], [0.2, -0.1, -0.3]])
    crossed = expected + np.array([[0, 0, -20.5], [0, 0, 0]])  # class 2 of image 1 now scores under 0.5
    assert "image 1: logits differ" in export.compare_logits(expected, crossed)[2][0]
    near_zero = np.array([[0.0005, 2.0, -1.0]])
    assert export.compare_logits(near_zero, near_zero * [-1, 1, 1])[2] == []  # float noise at 0.5 either way


def test_only_a_classifier_has_a_background_output():
    spec = models.input_spec(get_template("mobilenet_v3_small"), 32)
    labels = labels_document(get_template("mobilenet_v3_small"), ["a"], spec, background=True)
    assert labels["classes"] == ["a"] and labels["background"] is True
    assert "background" not in labels_document(get_template("mobilenet_v3_small"), ["a", "b"], spec)
    with pytest.raises(ValueError):
        labels_document(get_template("mobilenet_v3_small_multilabel"), ["a"], spec, background=True)
