"""PNG plots of a trained version, rendered with matplotlib (no display: the Agg backend) beside its model.

precision-recall curves per class, the confusion matrix (classifiers), loss and metric over the epochs, and a
sheet of validation images with the trained model's answers (boxes for detectors) drawn against the truth. The
answers come from the exported ONNX model through the predict function's own code (``sightline.inference``), at
each class's assumed threshold, so the sheet shows what a caller will get.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: a training container has no display

from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

PR_CURVES = "pr_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
TRAINING_CURVES = "training_curves.png"
VALIDATION_SHEET = "validation_samples.png"
DPI = 100
# Classes drawn in one plot at most: beyond this a figure is unreadable (the figures are in metrics.json).
MAX_CLASSES = 40
SHEET_IMAGES = 12


def _save(figure: plt.Figure, path: Path) -> Path:
    if not figure.get_constrained_layout():
        figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def pr_curves(curves: Sequence[dict[str, list[float]] | None], classes: Sequence[str], path: Path) -> Path | None:
    """One precision-recall curve per class (the first ``MAX_CLASSES`` that have one)."""
    drawn = [(name, curve) for name, curve in zip(classes, curves) if curve][:MAX_CLASSES]
    if not drawn:
        return None
    figure, axes = plt.subplots(figsize=(7, 6))
    for name, curve in drawn:
        axes.plot(curve["recall"], curve["precision"], drawstyle="steps-post", label=name)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.05),
             title="precision-recall on the validation images")
    axes.legend(loc="lower left", fontsize="small", ncol=1 + len(drawn) // 15)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path) -> Path | None:
    """Counts, rows the true class and columns the answer; only for up to ``MAX_CLASSES`` labels."""
    if not matrix or len(labels) > MAX_CLASSES:
        return None
    side = max(4.0, 0.5 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels=labels)
    axes.set(xlabel="predicted", ylabel="true", title="confusion matrix (validation)")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center",
                      color="white" if peak and count > peak / 2 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046)
    return _save(figure, path)


def training_curves(history: Sequence[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """Training loss and the validation primary metric by epoch."""
    if not history:
        return None
    epochs = [entry["epoch"] for entry in history]
    figure, loss_axes = plt.subplots(figsize=(7, 4.5))
    loss_axes.plot(epochs, [entry["train_loss"] for entry in history], "o-", color="tab:red", label="train loss")
    loss_axes.set(xlabel="epoch", ylabel="train loss")
    loss_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric_axes = loss_axes.twinx()
    metric_axes.plot(epochs, [entry.get(metric, math.nan) for entry in history], "s-", color="tab:blue",
                     label=f"validation {metric}")
    metric_axes.set(ylabel=metric, ylim=(0, 1.05))
    lines = loss_axes.get_lines() + metric_axes.get_lines()
    loss_axes.legend(lines, [line.get_label() for line in lines], loc="center right")
    loss_axes.set_title("training")
    return _save(figure, path)


def validation_sheet(samples: Sequence[dict[str, Any]], path: Path, boxes: bool) -> Path | None:
    """A grid of validation images; each sample: ``image`` (PIL), ``truth`` (class names, or with ``boxes``
    ``{"label", "box": {x_min, y_min, x_max, y_max}}`` in the image's pixels) and ``predicted`` (the predict
    function's answers: ``{"label", "score"}`` plus ``"box"`` with ``boxes``)."""
    if not samples:
        return None
    columns = min(4, len(samples))
    rows = math.ceil(len(samples) / columns)
    # Constrained layout keeps the two-line titles inside the figure, which tight_layout crops here.
    figure, grid = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False,
                                layout="constrained")
    for axes in grid.flat:
        axes.axis("off")
    for axes, sample in zip(grid.flat, samples):
        image: Image.Image = sample["image"]
        axes.imshow(image)
        truth, predicted = sample["truth"], sample["predicted"]
        if boxes:
            for drawn, colour, style in ((truth, "lime", "-"), (predicted, "red", "--")):
                for entry in drawn:
                    box = entry["box"]
                    axes.add_patch(Rectangle((box["x_min"], box["y_min"]), box["x_max"] - box["x_min"],
                                             box["y_max"] - box["y_min"], fill=False, edgecolor=colour,
                                             linestyle=style, linewidth=1.5))
                    score = f" {entry['score']:.2f}" if "score" in entry else ""
                    axes.text(box["x_min"], box["y_min"], f"{entry['label']}{score}", color=colour,
                              fontsize=7, va="bottom")
            axes.set_title("true (green) / predicted (red)", fontsize=8)
        else:
            answer = ", ".join(f"{p['label']} {p['score']:.2f}" for p in predicted) or "nothing"
            axes.set_title(f"true: {', '.join(truth) or 'none'}\npredicted: {answer}", fontsize=8)
    return _save(figure, path)
