"""Small-data detection figures on real aerial images: DeepForest's sample tree crowns, trained from scratch.

    pip download deepforest --no-deps -d /tmp/df      # once, by hand: the benchmark itself never downloads
    .venv/bin/python benchmarks/small_data.py --wheel /tmp/df/deepforest-*.whl [--epochs 30] [--runs before,after]

The ``deepforest`` wheel ships NEON aerial orthophotos (10 cm pixels) with tree crowns boxed in Pascal VOC XML.
The benchmark cuts them into square tiles (``--tile`` pixels, the last row and column moved in to stay whole;
a crown is kept on a tile when at least half of it is there) and writes a Sightline manifest:

- train and validation: the tiles of one Yellowstone image (``2019_YELL_2_528000_4978000_image_crop2``, 574
  crowns), every fifth tile to validation;
- held-out test: the tiles of a second Yellowstone image taken elsewhere (``2019_YELL_2_541000_4977000_image_crop``,
  279 crowns) and Florida's ``OSBS_029`` (61 crowns, another forest): never seen in training or model selection.

Each run trains ``--template`` (default ``ssdlite320_mobilenet_v3_large``) from random initialisation through ``run_job`` on the CPU, then
the exported ONNX model answers the test tiles through ``sightline.inference.Predictor`` (the predict function's
code, every box above a score of 0) and COCO mAP is computed on them. Runs:

- ``before``: the plain recipe: batches of 16, no augmentation, a constant learning rate, AdamW's weight decay
  1e-4 on every weight, SSDlite's own anchors (smallest 0.2 of the side) at 320 pixels, no early stopping. (The best epoch's
  weights are still the ones exported: that only flatters it.)
- ``after``: the template's defaults (recipe.py: batch size, image size and anchors from the data,
  augmentation 0.5, warmup and cosine, weight decay 0.05, early stopping) with ``any_orientation`` (aerial
  images have no up).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
import defusedxml.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sightline.inference import Predictor
from sightline_training import metrics
from sightline_training.config import JobConfig
from sightline_training.train import run_job

TEMPLATE = "ssdlite320_mobilenet_v3_large"
TRAIN_SOURCE = "2019_YELL_2_528000_4978000_image_crop2"
TEST_SOURCES = ("2019_YELL_2_541000_4977000_image_crop", "OSBS_029")
VALIDATION_EVERY = 5
KEEP_FRACTION = 0.5  # of a crown's box that must be on a tile for the tile to carry it
CLASS = "tree"

RUNS = {
    "before": {"pretrained": False, "batch_size": 16, "image_size": 320, "anchor_min": 0.2, "augment": 0.0,
               "warmup_epochs": 0.0, "final_learning_rate_fraction": 1.0, "weight_decay": 1e-4,
               "early_stopping_patience": 0},
    "after": {"pretrained": False, "any_orientation": True},
}


@dataclass
class Tile:
    name: str
    image: Image.Image
    boxes: list[tuple[float, float, float, float]]


def read_wheel(wheel: Path) -> dict[str, tuple[Image.Image, list[tuple[float, float, float, float]]]]:
    """Each annotated image in the wheel's ``deepforest/data``: (RGB image, crown boxes in pixels) by stem."""
    found = {}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for stem in (TRAIN_SOURCE, *TEST_SOURCES):
            root = ElementTree.fromstring(archive.read(f"deepforest/data/{stem}.xml"))
            boxes = [tuple(float(node.find(f"bndbox/{edge}").text) for edge in ("xmin", "ymin", "xmax", "ymax"))
                     for node in root.iter("object")]
            image_name = next(f"deepforest/data/{stem}{suffix}" for suffix in (".png", ".tif")
                              if f"deepforest/data/{stem}{suffix}" in names)
            image = Image.open(io.BytesIO(archive.read(image_name))).convert("RGB")
            found[stem] = (image, [box for box in boxes if box[2] > box[0] and box[3] > box[1]])
    return found


def starts(length: int, tile: int) -> list[int]:
    """Tile origins along one side: every ``tile`` pixels, the last moved in so that it stays whole."""
    if length <= tile:
        return [0]
    origins = list(range(0, length - tile + 1, tile))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def cut(stem: str, image: Image.Image, boxes: list[tuple[float, float, float, float]], tile: int) -> list[Tile]:
    tiles = []
    for top in starts(image.height, tile):
        for left in starts(image.width, tile):
            right, bottom = min(left + tile, image.width), min(top + tile, image.height)
            kept = []
            for x_min, y_min, x_max, y_max in boxes:
                clipped = (max(x_min, left), max(y_min, top), min(x_max, right), min(y_max, bottom))
                if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                    continue
                area = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
                if area >= KEEP_FRACTION * (x_max - x_min) * (y_max - y_min):
                    kept.append((clipped[0] - left, clipped[1] - top, clipped[2] - left, clipped[3] - top))
            tiles.append(Tile(f"{stem}_{left}_{top}", image.crop((left, top, right, bottom)), kept))
    return tiles


def write_dataset(sources: dict, tile: int, root: Path) -> tuple[Path, list[tuple[Path, Tile]], dict]:
    """The manifest (train and validation tiles), the held-out test tiles with their files, and counts."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    items, test, counts = [], [], {"train": [0, 0], "validation": [0, 0], "test": [0, 0]}
    for stem, (image, boxes) in sources.items():
        for number, piece in enumerate(cut(stem, image, boxes, tile)):
            path = root / "images" / f"{piece.name}.png"
            piece.image.save(path)
            if stem in TEST_SOURCES:
                split = "test"
                test.append((path, piece))
            else:
                split = "validation" if number % VALIDATION_EVERY == VALIDATION_EVERY // 2 else "train"
                items.append({
                    "id": hashlib.sha256(path.read_bytes()).hexdigest(), "image": {"uri": f"images/{path.name}"},
                    "width": piece.image.width, "height": piece.image.height, "split": split,
                    "boxes": [{"label": CLASS, "x_min": b[0], "y_min": b[1], "x_max": b[2], "y_max": b[3]}
                              for b in piece.boxes]})
            counts[split][0] += 1
            counts[split][1] += len(piece.boxes)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"format": "sightline.manifest/v1", "task": "detection",
                                    "datasets": ["deepforest-samples"], "classes": [CLASS],
                                    "created_at": "2026-12-01T00:00:00Z", "items": items}))
    return manifest, test, counts


def held_out_map(output: Path, test: list[tuple[Path, Tile]]) -> dict[str, float]:
    """COCO mAP of the exported model on the test tiles, answered as the predict function answers."""
    labels = json.loads((output / "labels.json").read_text())
    predictor = Predictor(str(output / "model.onnx"), labels)
    truths, detections = [], []
    for path, piece in test:
        with Image.open(path) as image:
            answers = predictor.predict(image.convert("RGB"), threshold=0.0, max_results=300)
        truths.append(metrics.ImageBoxes(np.asarray(piece.boxes, dtype=float).reshape(-1, 4),
                                         np.ones(len(piece.boxes), dtype=np.int64)))
        boxes = [[a["box"][edge] for edge in ("x_min", "y_min", "x_max", "y_max")] for a in answers]
        detections.append(metrics.ImageBoxes(np.asarray(boxes, dtype=float).reshape(-1, 4),
                                             np.ones(len(answers), dtype=np.int64),
                                             np.asarray([a["score"] for a in answers], dtype=float)))
    return metrics.detection_map(truths, detections, 1)


def train(name: str, template: str, params: dict, manifest: Path, root: Path, threads: int) -> tuple[dict, float]:
    started = time.monotonic()
    config = JobConfig(manifest_uri=str(manifest), output_uri=str(root / name / "out"), checkpoint_uri=None,
                       template_id=template, params=params, work_dir=root / name / "work", workers=0, device="cpu")
    torch.set_num_threads(threads)
    result = run_job(config)
    return result, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="a deepforest wheel (pip download deepforest)")
    parser.add_argument("--epochs", type=int, default=30, help="epoch budget of every run (default 30)")
    parser.add_argument("--tile", type=int, default=400, help="tile side in pixels (default 400, DeepForest's)")
    parser.add_argument("--template", default=TEMPLATE, help=f"detection template (default {TEMPLATE})")
    parser.add_argument("--runs", default="before,after", help=f"comma-separated, of: {', '.join(RUNS)}")
    parser.add_argument("--params", default="{}", help="JSON params added to every run, e.g. '{\"seed\": 1}'")
    # One thread: on a busy 2-core machine two threads spin against each other (measured: 12 s vs 1.5 s an image).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, help="kept afterwards (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    root = args.work_dir or Path(tempfile.mkdtemp(prefix="sightline-small-data-"))
    manifest, test, counts = write_dataset(read_wheel(args.wheel), args.tile, root)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} on {args.threads} threads; {args.tile}-pixel tiles; work in {root}")
    print("data: " + ", ".join(f"{split} {tiles} tiles / {boxes} crowns" for split, (tiles, boxes) in counts.items()))
    rows = []
    for name in args.runs.split(","):
        params = {"epochs": args.epochs, **RUNS[name], **json.loads(args.params)}
        result, seconds = train(name, args.template, params, manifest, root, args.threads)
        test_scores = held_out_map(root / name / "out", test)
        row = {"run": name, "template": args.template, "params": params, "chosen": result["recipe"]["chosen"], "epochs": result["epochs"],
               "best_epoch": result["best_epoch"], "validation_map_50": result["map_50"],
               "test_map_50": test_scores["map_50"], "test_map_50_95": test_scores["map_50_95"],
               "minutes": round(seconds / 60, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{'run':8} {'epochs':>6} {'best':>4} {'val mAP50':>9} {'test mAP50':>10} {'test mAP50-95':>13} "
          f"{'minutes':>7}  chosen")
    for row in rows:
        print(f"{row['run']:8} {row['epochs']:>6} {row['best_epoch']:>4} {row['validation_map_50']:>9.3f} "
              f"{row['test_map_50']:>10.3f} {row['test_map_50_95']:>13.3f} {row['minutes']:>7}  "
              f"{json.dumps(row['chosen'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
