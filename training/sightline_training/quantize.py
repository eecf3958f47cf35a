"""Optional INT8 quantization of an exported classifier (``params.quantize``), and the rule that publishes it.

onnxruntime's static quantization in QDQ form: every op it knows gets QuantizeLinear/DequantizeLinear pairs,
which its CPU execution provider fuses into QLinearConv, QGemm and friends at load (the predict function loads
with every graph optimisation on). Weights are int8 per output channel, activations uint8: the pairing its x86
kernels run fastest. Weights keep 7 bits (``reduce_range``): x86 CPUs without VNNI multiply uint8 by int8 with an
instruction that saturates on 8-bit weights, and Lambda's x86 hosts are not all VNNI; so the model measured here
computes what they compute. Activation ranges come from MinMax calibration on training images prepared exactly
as the predict function prepares a request.

Both models are then measured on the validation split through the predict function's own code
(``sightline.inference.Predictor``, ``sightline_training.evaluate``), so fp32 and int8 are compared alike.
"""
from __future__ import annotations

import contextlib
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from sightline import imaging

from sightline_training import data, evaluate
from sightline_training.manifest import Manifest, ManifestItem

log = logging.getLogger(__name__)

INT8, FP32 = "int8", "fp32"
# Training images that set the activation ranges: enough for stable MinMax ranges, bounded so that a large
# dataset's calibration stays a minute or less on a CPU.
CALIBRATION_IMAGES = 128
# Nodes a quantized graph has, in QDQ form or after onnxruntime fused it (QOperator form).
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm",
                           "QLinearAdd", "QLinearMul", "ConvInteger", "MatMulInteger"})
# Timed runs per model after WARMUP_RUNS, one image each, one thread: what one Lambda request costs.
TIMED_RUNS, WARMUP_RUNS = 20, 3


class _Images(CalibrationDataReader):
    """The calibration inputs, one predict-shaped tensor at a time."""

    def __init__(self, input_name: str, tensors: Sequence[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter([{input_name: tensor} for tensor in tensors])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibration_tensors(items: Sequence[ManifestItem], paths: dict[str, Path], spec: imaging.InputSpec,
                        seed: int, limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` training images, a seeded sample (manifests list items by class), as predict feeds them."""
    chosen = random.Random(seed).sample(list(items), min(limit, len(items)))
    return [imaging.to_tensor(data.load_rgb(paths[item.id]), spec) for item in chosen]


def quantize_int8(source: Path, target: Path, input_name: str, tensors: Sequence[np.ndarray]) -> None:
    """Write ``source``'s static INT8 (QDQ) quantization to ``target``, calibrated on ``tensors``."""
    if not tensors:
        raise ValueError("INT8 calibration needs at least one image")
    target.parent.mkdir(parents=True, exist_ok=True)
    # onnxruntime's pre-processing first (shape inference, basic graph optimisation): the exporter leaves the
    # folded BatchNorm weights behind Identity nodes, and the quantizer leaves a weight it reaches through one in
    # fp32, so that ResNet-50's convolutions stayed fp32 between Q/DQ pairs and ran slower than the fp32 graph.
    prepared = target.with_name(f"{target.stem}.prepared.onnx")
    # Its symbolic shape inference writes what it could not finish to the working directory (a model and its
    # external data) before raising: let that land in a folder of its own, not wherever the job was started.
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch, contextlib.chdir(scratch):
        quant_pre_process(str(source.resolve()), str(prepared.resolve()))
    quantize_static(str(prepared), str(target), _Images(input_name, tensors), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    prepared.unlink()
    onnx.checker.check_model(str(target))
    log.info("quantized %s to %s: %.1f MB -> %.1f MB", source.name, target, source.stat().st_size / 1e6,
             target.stat().st_size / 1e6)


def quantized_ops(path: Path) -> dict[str, int]:
    """How many nodes of each quantized kind the graph at ``path`` has (none for an fp32 graph)."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in QUANTIZED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def milliseconds_per_image(path: Path, input_name: str, tensor: np.ndarray) -> float:
    """Median wall time of one ``session.run`` on one thread with every graph optimisation (as predict loads)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(WARMUP_RUNS):
        session.run(None, {input_name: tensor})
    times = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        session.run(None, {input_name: tensor})
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def validation_metrics(model: Path, labels: dict[str, Any], manifest: Manifest, validation: Sequence[ManifestItem],
                       paths: dict[str, Path]) -> dict[str, float]:
    """The metrics of ``model`` on the validation items, answering through the predict function's code."""
    from sightline.inference import Predictor

    document = evaluate.evaluate(Predictor(model, labels), replace(manifest, items=tuple(validation)), paths)
    return document["metrics"]


@dataclass(frozen=True)
class Decision:
    """metrics.json ``quantization``: both models' validation metrics and speed, and which one is published."""

    primary_metric: str
    tolerance_points: float
    fp32: dict[str, float]
    int8: dict[str, float]
    calibration_images: int
    ops: dict[str, int] = field(default_factory=dict)
    failure: str = ""  # why there is no int8 model to measure

    @property
    def points_lost(self) -> float | None:
        """fp32's primary metric minus int8's, in points (hundredths); negative when int8 does better."""
        if self.failure:
            return None
        return round(100.0 * (self.fp32[self.primary_metric] - self.int8[self.primary_metric]), 4)

    @property
    def published(self) -> str:
        return INT8 if not self.failure and self.points_lost <= self.tolerance_points else FP32

    def to_dict(self) -> dict[str, Any]:
        document = {"requested": INT8, "published": self.published, "primary_metric": self.primary_metric,
                    "points_lost": self.points_lost, "tolerance_points": self.tolerance_points,
                    "fp32": self.fp32, "int8": self.int8, "calibration_images": self.calibration_images,
                    "method": "onnxruntime static QDQ: int8 per-channel weights (7-bit range), uint8 activations, "
                              "MinMax calibration on training images",
                    "quantized_ops": self.ops}
        if self.failure:
            document["reason"] = f"quantization failed: {self.failure}"
        elif self.published == FP32:
            document["reason"] = (f"int8 loses {self.points_lost:g} points of {self.primary_metric} on the "
                                  f"validation split, more than quantize_tolerance {self.tolerance_points:g}")
        return document


def quantize_and_choose(fp32_model: Path, int8_model: Path, labels: dict[str, Any], manifest: Manifest,
                        train: Sequence[ManifestItem], validation: Sequence[ManifestItem], paths: dict[str, Path],
                        primary_metric: str, tolerance_points: float, seed: int) -> Decision:
    """Quantize ``fp32_model`` to ``int8_model``, measure both, and say which one to publish. A quantization that
    fails publishes fp32 with the reason: the trained model is worth more than its int8 form."""
    spec = imaging.InputSpec.from_labels(labels)
    tensors = calibration_tensors(train, paths, spec, seed)
    try:
        quantize_int8(fp32_model, int8_model, spec.name, tensors)
        ops = quantized_ops(int8_model)
        if not ops:
            raise RuntimeError(f"onnxruntime quantized no node of {fp32_model.name}")
    except Exception as error:  # noqa: BLE001 - onnxruntime's quantizer raises many kinds; fp32 stands
        log.warning("INT8 quantization failed; publishing fp32", exc_info=True)
        return Decision(primary_metric, float(tolerance_points), {}, {}, len(tensors),
                        failure=f"{type(error).__name__}: {error}"[:300])
    measured = {}
    for precision, path in ((FP32, fp32_model), (INT8, int8_model)):
        scores = validation_metrics(path, labels, manifest, validation, paths)
        measured[precision] = {**scores, "ms_per_image": milliseconds_per_image(path, spec.name, tensors[0])}
        log.info("%s model on %d validation images: %s", precision, len(validation), measured[precision])
    return Decision(primary_metric, float(tolerance_points), measured[FP32], measured[INT8], len(tensors), ops)
