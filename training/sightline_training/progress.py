"""``progress.json``: what a running job says about itself after every epoch, for
``GET /v1/models/{id}/versions/{v}`` (live curves, ETA) and as one JSON log line.

Writing it never fails the job: a progress report that cannot be stored is logged and skipped.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from sightline.contract import PROGRESS_FILE, PROGRESS_FORMAT

from sightline_training import storage

log = logging.getLogger(__name__)


def progress_document(history: list[dict[str, Any]], epochs: int, train_images: int,
                      primary_metric: str) -> dict[str, Any]:
    """The job's state after ``history[-1]``: epochs done and planned, last loss and metric, speed and ETA."""
    last = history[-1]
    seconds = [float(entry.get("seconds", 0.0)) for entry in history]
    per_epoch = sum(seconds) / len(seconds) if seconds else 0.0
    return {
        "format": PROGRESS_FORMAT,
        "epoch": int(last["epoch"]),
        "epochs": epochs,
        "train_loss": last.get("train_loss"),
        "metric": {"name": primary_metric, "value": last.get(primary_metric)},
        "images_per_second": round(train_images / seconds[-1], 2) if seconds and seconds[-1] > 0 else None,
        "eta_seconds": round(per_epoch * max(0, epochs - int(last["epoch"])), 1),
        "history": history,
        "updated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def report(document: dict[str, Any], output_uri: str) -> None:
    """Log the epoch as one JSON line and store ``progress.json`` beside the job's outputs."""
    log.info(json.dumps({"event": "epoch", **{k: v for k, v in document.items() if k != "history"}}))
    try:
        storage.write_bytes(storage.join(output_uri, PROGRESS_FILE), json.dumps(document).encode(),
                            "application/json")
    except Exception as error:  # noqa: BLE001 - progress is a view; the run goes on without it
        log.warning("progress not stored: %s", error)
