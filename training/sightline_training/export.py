"""ONNX export (TorchScript exporter: ``dynamo=False``) and its verification with onnxruntime.

The dynamo exporter cannot trace torchvision's detectors, hence the TorchScript-based one (deprecated since
PyTorch 2.9, still the one that works for them). The job's check
feeds onnxruntime what the predict function builds from labels.json and PyTorch the validation transform's
tensor, so it checks the graph and the preprocessing contract together.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from sightline.contract import CLASSIFICATION, LABELS_FORMAT
from sightline.imaging import InputSpec
from sightline.templates import TrainingTemplate

from sightline_training.models import CLASSIFIER_TASKS, detection_limits

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "images"
CLASSIFIER_OUTPUTS = ("logits",)
DETECTOR_OUTPUTS = ("boxes", "scores", "labels")
# Float32 through two runtimes differs by a few ulps per operation, and the error grows with the values: the
# logits of a from-scratch model can reach the hundreds. So logits are compared relative to the largest logit
# of their image (at least 1), which is what a softmax is sensitive to; observed: ~1e-5 relative. Multi-label
# logits (one sigmoid each) are compared the same way: a logit within that margin of PyTorch's can only be on the
# other side of 0 (a score of 0.5) where PyTorch's own is within the margin of 0, so every class's decision at
# the default threshold agrees too; and the best class, listed first, must be the same unless tied.
LOGITS_RELATIVE_TOLERANCE = 1e-3
# Detections: scores and boxes divided by the input side (so both are on a 0..1 scale).
DETECTION_TOLERANCE = 1e-4


class DetectorForExport(nn.Module):
    """One image [3, H, W] in [0, 1] -> ``boxes`` [K, 4] (input pixels), ``scores`` [K], ``labels`` [K] int64."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        detections = self.detector([image])[0]
        return detections["boxes"], detections["scores"], detections["labels"]


@dataclass(frozen=True)
class OnnxCheck:
    images: int
    max_abs_diff: float
    passed: bool
    reason: str = ""

    max_rel_diff: float | None = None  # classifiers: the difference relative to the logits' scale

    def to_dict(self) -> dict:
        document = {"images": self.images, "max_abs_diff": self.max_abs_diff, "passed": self.passed}
        if self.max_rel_diff is not None:
            document["max_rel_diff"] = self.max_rel_diff
        return document


def export_onnx(model: nn.Module, template: TrainingTemplate, image_size: int, path: Path) -> None:
    """Write ``model`` (a CPU fp32 module in eval mode) to ``path`` as the labels.json contract describes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if template.task in CLASSIFIER_TASKS:
        module, example = model, torch.zeros(1, 3, image_size, image_size)
        outputs = CLASSIFIER_OUTPUTS
        dynamic_axes = {INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}}
    else:
        module, example = DetectorForExport(model).eval(), torch.rand(3, image_size, image_size,
                                                                      generator=torch.Generator().manual_seed(0))
        outputs = DETECTOR_OUTPUTS
        dynamic_axes = {name: {0: "detections"} for name in DETECTOR_OUTPUTS}
    with warnings.catch_warnings():
        # Tracing turns the detector's shapes into constants, which is right for its fixed input size, and
        # warns each time; the TorchScript exporter's deprecation is known (see the module docstring).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=list(outputs), dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    onnx.checker.check_model(str(path))
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)


def optimize_for_serving(path: Path) -> None:
    """Replace ``path`` with onnxruntime's basic-level optimization of it (constant folding, redundant nodes
    removed: plain ONNX that any CPU runs), so each predict cold start skips that work: it halved SSDlite's
    session creation here. Not the extended levels: they write layouts of the CPU that ran them."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    optimized = path.with_name(f"{path.stem}.optimized{path.suffix}")
    options.optimized_model_filepath = str(optimized)
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(str(optimized))
    optimized.replace(path)
    log.info("optimized %s for serving (%.1f MB)", path, path.stat().st_size / 1e6)


def labels_document(template: TrainingTemplate, classes: Sequence[str], spec: InputSpec,
                    background: bool = False, thresholds: Mapping[str, float] | None = None) -> dict:
    """labels.json. ``background``: a classifier trained with negatives, whose ``logits`` have one more column
    than ``classes``, the last one for an image of none of them (never reported by the predict function).
    ``thresholds``: each class's assumed threshold (its best validation F1), the predict function's default
    for a caller who gives none; a class without one gets the task's default there."""
    outputs = ({"logits": "logits"} if template.task in CLASSIFIER_TASKS
               else {name: name for name in DETECTOR_OUTPUTS})
    # precision: what model.onnx computes in; the job sets "int8" when it publishes a quantized model.
    document = {"format": LABELS_FORMAT, "task": template.task, "template": template.id, "classes": list(classes),
                "input": spec.to_dict(), "outputs": outputs, "precision": "fp32"}
    if background:
        if template.task != CLASSIFICATION:
            raise ValueError(f"only classifiers have a background output, not {template.task} models")
        document["background"] = True
    if thresholds:
        document["thresholds"] = {name: float(thresholds[name]) for name in classes if name in thresholds}
    return document


def open_session(path: Path) -> onnxruntime.InferenceSession:
    # The predict function runs onnxruntime on CPU; so does the check.
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def verify_classifier(session: onnxruntime.InferenceSession, model: nn.Module, torch_inputs: Sequence[torch.Tensor],
                      onnx_inputs: Sequence[np.ndarray]) -> OnnxCheck:
    """Logits of onnxruntime on the contract's inputs against PyTorch on the validation tensors.

    The images go through as one batch and the first also alone, the shape the predict function uses.
    See :func:`compare_logits` for what counts as the same (for classifiers and multi-label models alike).
    """
    with torch.inference_mode():
        expected = model(torch.stack(list(torch_inputs))).numpy()
    batched = session.run(["logits"], {INPUT_NAME: np.concatenate(list(onnx_inputs))})[0]
    single = session.run(["logits"], {INPUT_NAME: onnx_inputs[0]})[0]
    if batched.shape != expected.shape or single.shape != expected[:1].shape:
        return OnnxCheck(len(torch_inputs), float("inf"), False,
                         f"logits shapes {batched.shape} and {single.shape} from onnxruntime, "
                         f"{expected.shape} from PyTorch")
    absolute, relative, problems = compare_logits(np.concatenate([expected, expected[:1]]),
                                                  np.concatenate([batched, single]))
    return OnnxCheck(len(torch_inputs), absolute, not problems, "; ".join(problems[:3]), max_rel_diff=relative)


def compare_logits(expected: np.ndarray, actual: np.ndarray,
                   tolerance: float = LOGITS_RELATIVE_TOLERANCE) -> tuple[float, float, list[str]]:
    """(largest absolute difference, largest difference relative to its image's logit scale, problems).

    Each image's logits agree when they differ by at most ``tolerance`` times the image's largest absolute
    logit (at least 1), and when both runtimes rank the same class first unless the top two are tied within
    that margin. A correct export passes at any logit magnitude; a wrong graph or preprocessing does not.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if not np.isfinite(actual).all():
        return float("inf"), float("inf"), ["onnxruntime gave non-finite logits"]
    scale = np.maximum(np.abs(expected).max(axis=1), 1.0)
    gaps = np.abs(actual - expected).max(axis=1)
    relative = gaps / scale
    problems = [f"image {i + 1}: logits differ by {gaps[i]:.3g}, {relative[i]:.3g} of their scale {scale[i]:.3g} "
                f"(tolerance {tolerance})" for i in np.flatnonzero(relative > tolerance)]
    for i in range(len(expected)):
        order = np.argsort(-expected[i], kind="stable")
        tied = len(order) > 1 and expected[i, order[0]] - expected[i, order[1]] <= tolerance * scale[i]
        if not tied and int(np.argmax(actual[i])) != int(order[0]):
            problems.append(f"image {i + 1}: onnxruntime ranks class {int(np.argmax(actual[i]))} first, "
                            f"PyTorch class {int(order[0])}")
    return float(gaps.max(initial=0.0)), float(relative.max(initial=0.0)), problems


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # [K, 4] float
    scores: np.ndarray  # [K]
    labels: np.ndarray  # [K] int64


def verify_detector(session: onnxruntime.InferenceSession, model: nn.Module, torch_inputs: Sequence[torch.Tensor],
                    onnx_inputs: Sequence[np.ndarray]) -> OnnxCheck:
    """Detections of onnxruntime against PyTorch, image by image (see :func:`compare_detections`)."""
    exportable = DetectorForExport(model).eval()
    score_threshold, nms_threshold, max_detections = detection_limits(model)
    worst, reasons = 0.0, []
    for number, (torch_input, onnx_input) in enumerate(zip(torch_inputs, onnx_inputs), start=1):
        with torch.inference_mode():
            expected = Detections(*(t.numpy() for t in exportable(torch_input)))
        boxes, scores, labels = session.run(list(DETECTOR_OUTPUTS), {INPUT_NAME: onnx_input})
        if labels.dtype != np.int64:
            reasons.append(f"labels are {labels.dtype}, not int64")
        difference, problems = compare_detections(
            expected, Detections(boxes, scores, labels), side=max(torch_input.shape[-2:]),
            score_threshold=score_threshold, nms_threshold=nms_threshold, max_detections=max_detections)
        log.info("onnx check image %d: %d detections from PyTorch, %d from onnxruntime, max diff %.3g",
                 number, len(expected.scores), len(scores), difference)
        worst = max(worst, difference)
        reasons += [f"image {number}: {problem}" for problem in problems]
    return OnnxCheck(len(torch_inputs), worst, not reasons, "; ".join(reasons[:3]))


def compare_detections(expected: Detections, actual: Detections, *, side: int, score_threshold: float,
                       nms_threshold: float, max_detections: int,
                       tolerance: float = DETECTION_TOLERANCE) -> tuple[float, list[str]]:
    """The largest difference between matched detections, and what cannot be explained.

    Two runtimes agree on each detection to float precision, but not always on the order of equal scores,
    and NMS keeps the first of two overlapping boxes: where scores tie, each side may keep a different box
    of the pair. So detections are matched one to one (same label, score and box within ``tolerance``, boxes
    divided by ``side``); one left unmatched is accepted only when the other side kept an overlapping box of
    the same label that scores at least as high (it won NMS there), or when its score sits at the score
    threshold or at the cut of ``max_detections``. The top detection must match unless its score is tied.
    """
    problems: list[str] = []
    if expected.boxes.shape[1:] != (4,) or actual.boxes.shape[1:] != (4,):
        return float("inf"), [f"boxes have shape {actual.boxes.shape}, expected [K, 4]"]
    if not (len(actual.boxes) == len(actual.scores) == len(actual.labels)):
        return float("inf"), ["boxes, scores and labels differ in length"]
    distance = np.full((len(expected.scores), len(actual.scores)), np.inf)
    if distance.size:
        box_gap = np.abs(expected.boxes[:, None, :] - actual.boxes[None, :, :]).max(axis=2) / side
        score_gap = np.abs(expected.scores[:, None] - actual.scores[None, :])
        same_label = expected.labels[:, None] == actual.labels[None, :]
        distance = np.where(same_label, np.maximum(box_gap, score_gap), np.inf)
    match_of_expected: dict[int, int] = {}
    taken: set[int] = set()
    for i in np.argsort(-expected.scores, kind="stable"):
        free = [j for j in np.argsort(distance[i], kind="stable") if j not in taken]
        if free and distance[i, free[0]] <= tolerance:
            match_of_expected[int(i)] = int(free[0])
            taken.add(int(free[0]))
    worst = max((float(distance[i, j]) for i, j in match_of_expected.items()), default=0.0)

    for name, side_a, side_b, matched in (("PyTorch", expected, actual, set(match_of_expected)),
                                          ("onnxruntime", actual, expected, taken)):
        unexplained = [i for i in range(len(side_a.scores)) if i not in matched
                       and not _explained(i, side_a, side_b, score_threshold, nms_threshold, max_detections,
                                          tolerance)]
        if unexplained:
            i = unexplained[0]
            problems.append(f"{len(unexplained)} detection(s) only from {name}, e.g. label {int(side_a.labels[i])} "
                            f"score {float(side_a.scores[i]):.4f} box {np.round(side_a.boxes[i], 2).tolist()}")
    if len(expected.scores):
        order = np.argsort(-expected.scores, kind="stable")
        top = int(order[0])
        tied = len(order) > 1 and expected.scores[top] - expected.scores[order[1]] <= tolerance
        if top not in match_of_expected and not tied:
            problems.append(f"top detection (score {float(expected.scores[top]):.4f}) has no onnxruntime match")
    return worst, problems


def _explained(index: int, side_a: Detections, side_b: Detections, score_threshold: float, nms_threshold: float,
               max_detections: int, tolerance: float) -> bool:
    score = float(side_a.scores[index])
    if score <= score_threshold + tolerance:
        return True
    if len(side_b.scores) >= max_detections and score <= float(side_b.scores.min()) + tolerance:
        return True
    rivals = (side_b.labels == side_a.labels[index]) & (side_b.scores >= score - tolerance)
    if not rivals.any():
        return False
    return bool((_iou(side_a.boxes[index], side_b.boxes[rivals]) > nms_threshold - tolerance).any())


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x_min = np.maximum(box[0], boxes[:, 0])
    y_min = np.maximum(box[1], boxes[:, 1])
    x_max = np.minimum(box[2], boxes[:, 2])
    y_max = np.minimum(box[3], boxes[:, 3])
    intersection = np.clip(x_max - x_min, 0, None) * np.clip(y_max - y_min, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)
