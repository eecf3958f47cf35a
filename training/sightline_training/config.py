"""What one training job is asked to do (built from the environment or flags by ``__main__``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JobConfig:
    manifest_uri: str
    output_uri: str
    checkpoint_uri: str | None  # None: no resumable state kept (local debugging)
    template_id: str | None  # None: the task's default template
    params: Any  # the JSON value given; validated by the template
    work_dir: Path  # image cache, local checkpoint, artifacts before upload
    workers: int = 4
    device: str = "auto"  # auto, cpu or cuda
    seed: int = 0
    check_images: int = 4  # validation images the ONNX check runs
    weights_uri: str | None = None  # the deployment's s3:// prefix of published weights (weights.py)
    channels_last: str = "auto"  # auto (classifiers on CUDA), 1 or 0 (precision.py)
