"""The resumable training state, saved after every epoch and kept at ``<checkpoint uri>/checkpoint.pt``.

The dict has the keys of torchvision's references/detection (``args``, ``model``, ``optimizer``,
``lr_scheduler``, ``scaler``, ``epoch``) plus ``history``, so a resumed job reports every epoch.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from sightline.contract import CHECKPOINT_FILE
from sightline_training import storage

log = logging.getLogger(__name__)

def checkpoint_uri(prefix: str) -> str:
    return storage.join(prefix, CHECKPOINT_FILE)


def save_checkpoint(state: dict[str, Any], local_path: Path, prefix: str | None) -> None:
    """Write ``state`` to ``local_path`` (atomically) and upload it under ``prefix`` when one is given."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=local_path.parent, prefix=f".{local_path.name}.")
    os.close(fd)
    try:
        torch.save(state, partial)
        os.replace(partial, local_path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    if prefix:
        storage.upload_file(local_path, checkpoint_uri(prefix))
        log.info("checkpoint for epoch %d saved to %s", state["epoch"] + 1, checkpoint_uri(prefix))


def fetch_checkpoint(prefix: str | None, local_path: Path) -> dict[str, Any] | None:
    """The state saved under ``prefix``, or None when the job starts afresh."""
    if not prefix:
        return None
    try:
        storage.download_file(checkpoint_uri(prefix), local_path)
    except storage.ObjectNotFound:
        return None
    # Tensors, numbers, strings and containers only: weights_only refuses anything that runs code.
    return torch.load(local_path, map_location="cpu", weights_only=True)
