"""What the predict tests share: tiny real ONNX models exported from torch (so every test runs a real
onnxruntime session), their labels.json, artifacts in the moto bucket, and image encoding. The fixtures built on
these are in this folder's ``conftest.py``.
"""
from __future__ import annotations

import io
import json
import struct
import zlib
from functools import cache

from PIL import Image

CLASSIFIER_CLASSES = ["blue", "green", "red"]
CLASSIFIER_INPUT = {
    "name": "input", "width": 24, "height": 16, "batch": True,
    "scale": 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
}
# The classifier's logit for class i is LOGIT_GAIN times the mean of one normalised channel (B, G, R).
LOGIT_GAIN = 3.0

DETECTOR_CLASSES = ["circle", "square"]
# Non-square on purpose, and not the aspect of the test images, so x and y scale differently.
DETECTOR_INPUT = {
    "name": "images", "width": 64, "height": 32, "batch": False,
    "scale": 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
}
# Candidates in the model input's pixels: (x_min, y_min, x_max, y_max), score on a white image, label id.
DETECTOR_CANDIDATES = [
    ((-4.0, 4.0, 24.0, 20.0), 0.9, 1),  # pokes out on the left: clipped to 0
    ((32.0, 8.0, 60.0, 28.0), 0.7, 2),
    ((40.0, 16.0, 80.0, 40.0), 0.6, 2),  # runs past the right and bottom edges
    ((0.0, 0.0, 10.0, 10.0), 0.95, 0),  # background: never reported
    ((5.0, 5.0, 15.0, 15.0), 0.8, 3),  # no such class: never reported
    ((10.0, 10.0, 20.0, 20.0), 0.3, 1),  # under the default threshold
]
# The detector drops candidates scoring under this inside the model, so a dark image has K = 0.
DETECTOR_MIN_SCORE = 0.05


def _export(module, example, input_name: str, output_names: list[str], dynamic_axes: dict | None = None) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module.eval(), (example,), buffer, input_names=[input_name], output_names=output_names,
        dynamic_axes=dynamic_axes, opset_version=17, dynamo=False,
    )
    return buffer.getvalue()


@cache
def build_classifier(background: bool = False) -> bytes:
    """A conv classifier whose class i scores the mean of one input channel: blue, green, red. As a multi-label
    model each colour is a class of its own (yellow is green and red). With a ``background``, a fourth logit,
    minus the mean of all three: "none" wins on a dark image."""
    import torch
    from torch import nn

    class ChannelClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = nn.Conv2d(3, 3, kernel_size=1, bias=False)  # RGB in, (B, G, R) out: the classes' order
            self.pool = nn.AdaptiveAvgPool2d(1)
            with torch.no_grad():
                self.mix.weight.zero_()
                for out_channel, in_channel in enumerate((2, 1, 0)):
                    self.mix.weight[out_channel, in_channel] = LOGIT_GAIN

        def forward(self, x):
            logits = torch.flatten(self.pool(self.mix(x)), 1)
            if background:
                logits = torch.cat([logits, -logits.mean(dim=1, keepdim=True)], dim=1)
            return logits

    example = torch.zeros(1, 3, CLASSIFIER_INPUT["height"], CLASSIFIER_INPUT["width"])
    return _export(ChannelClassifier(), example, "input", ["logits"])


@cache
def build_detector() -> bytes:
    """A "detector" over fixed candidates whose scores scale with the image's mean brightness."""
    import torch
    from torch import nn

    class BrightnessDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("boxes", torch.tensor([c[0] for c in DETECTOR_CANDIDATES]))
            self.register_buffer("scores", torch.tensor([c[1] for c in DETECTOR_CANDIDATES]))
            self.register_buffer("labels", torch.tensor([c[2] for c in DETECTOR_CANDIDATES], dtype=torch.int64))

        def forward(self, image):
            scores = self.scores * image.mean()
            keep = torch.nonzero(scores > DETECTOR_MIN_SCORE).flatten()
            return self.boxes[keep], scores[keep], self.labels[keep]

    example = torch.ones(3, DETECTOR_INPUT["height"], DETECTOR_INPUT["width"])
    dynamic = {"boxes": {0: "k"}, "scores": {0: "k"}, "labels": {0: "k"}}
    return _export(BrightnessDetector(), example, "images", ["boxes", "scores", "labels"], dynamic)


def classifier_labels(**overrides) -> dict:
    return {
        "format": "sightline.labels/v1", "task": "classification", "template": "tiny_channel_classifier",
        "classes": list(CLASSIFIER_CLASSES), "input": dict(CLASSIFIER_INPUT), "outputs": {"logits": "logits"},
        **overrides,
    }


def multilabel_labels(**overrides) -> dict:
    return classifier_labels(task="multilabel", template="tiny_channel_multilabel", **overrides)


def detector_labels(**overrides) -> dict:
    return {
        "format": "sightline.labels/v1", "task": "detection", "template": "tiny_brightness_detector",
        "classes": list(DETECTOR_CLASSES), "input": dict(DETECTOR_INPUT),
        "outputs": {"boxes": "boxes", "scores": "scores", "labels": "labels"},
        **overrides,
    }


def upload_version(resources, model_id: str, version: int, model: bytes, labels: dict) -> dict:
    """model.onnx and labels.json of one version in the artifact bucket; returns the version's artifacts map."""
    from sightline import contract

    prefix = contract.version_prefix(model_id, version)
    artifacts = {"model": f"{prefix}model.onnx", "labels": f"{prefix}labels.json"}
    resources.s3.put_object(Bucket=resources.artifact_bucket, Key=artifacts["model"], Body=model)
    resources.s3.put_object(Bucket=resources.artifact_bucket, Key=artifacts["labels"], Body=json.dumps(labels))
    return artifacts


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (30, 20)) -> Image.Image:
    return Image.new("RGB", size, colour)


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
