"""card.json: one document that says what a model version is, what it was trained on and how well it does.

Written by the training job beside model.onnx, labels.json and metrics.json, so the downloaded files describe
themselves (docs/architecture.md, "card.json").
"""
from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import torch

from sightline_training.manifest import TRAIN, VALIDATION, Manifest

CARD_FORMAT = "sightline.card/v1"
# The packages whose versions decide what the model computes and how it was measured.
PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime", "numpy", "pillow", "pycocotools", "scikit-learn",
            "matplotlib")


def class_counts(manifest: Manifest) -> list[dict[str, Any]]:
    """Per class, in label order, the images showing it in each split (and a detector's boxes)."""
    images = {split: Counter() for split in (TRAIN, VALIDATION)}
    boxes: Counter = Counter()
    for item in manifest.items:
        shown = set(item.class_indices)
        if item.class_index is not None:
            shown.add(item.class_index)
        for box in item.boxes:
            shown.add(box.label_id - 1)
            boxes[box.label_id - 1] += 1
        for index in shown:
            images[item.split][index] += 1
    counts = []
    for index, name in enumerate(manifest.classes):
        entry = {"name": name, "train_images": images[TRAIN][index], "validation_images": images[VALIDATION][index]}
        if boxes:
            entry["boxes"] = boxes[index]
        counts.append(entry)
    return counts


def hardware(device: torch.device) -> dict[str, Any]:
    found = {"device": device.type, "machine": platform.machine(), "cpus": os.cpu_count()}
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
        found["gpus"] = torch.cuda.device_count()
    return found


def software() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue  # the training image has every one; a development machine may lack one
    return versions


def card_document(*, manifest: Manifest, manifest_uri: str, snapshot: str | None, template_id: str,
                  params: dict[str, Any], labels: dict[str, Any], metrics: dict[str, Any],
                  device: torch.device, plots: Sequence[str] = ()) -> dict[str, Any]:
    """card.json from what the job knows at the end: manifest, labels.json and metrics.json."""
    history = metrics.get("history") or []
    headline = {name: metrics[name] for name in (metrics.get("primary_metric"),) if name in metrics}
    measured = {key: value for key, value in metrics.items()
                if key not in ("history", "per_class", "confusion_matrix", "assumed_thresholds", "recipe",
                               "weights", "onnx_check", "device", "quantization")}
    return {
        "format": CARD_FORMAT,
        "task": labels["task"],
        "template": template_id,
        "params": params,
        "weights": metrics.get("weights"),
        "dataset": {"datasets": list(manifest.datasets), "snapshot": snapshot, "manifest": manifest_uri,
                    "train_images": sum(item.split == TRAIN for item in manifest.items),
                    "validation_images": sum(item.split == VALIDATION for item in manifest.items)},
        "classes": class_counts(manifest),
        "input": labels["input"],
        "background": bool(labels.get("background", False)),
        "precision": labels.get("precision", "fp32"),
        "primary_metric": {"name": metrics.get("primary_metric"), **headline},
        "metrics": measured,
        "per_class": metrics.get("per_class"),
        "assumed_thresholds": labels.get("thresholds", {}),
        "onnx_check": metrics.get("onnx_check"),
        "quantization": metrics.get("quantization"),
        "training": {"epochs": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch"),
                     "stopped_early": metrics.get("stopped_early"), "recipe": metrics.get("recipe"),
                     "seconds": round(sum(float(entry.get("seconds", 0.0)) for entry in history), 3)},
        "plots": list(plots),
        "hardware": hardware(device),
        "software": software(),
    }
