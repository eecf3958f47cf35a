"""How a job computes: the autocast dtype (the ``precision`` param) and the memory format of images and weights.

On CUDA, ``auto`` is bf16 autocast where the GPU supports it (Ampere and later: no loss scaling needed, the
range of fp32) and fp16 with a GradScaler elsewhere (Turing, Volta). Classifiers also run channels_last there:
tensor cores take NHWC, and cuDNN otherwise transposes around every convolution. Detectors keep the default
layout: their models batch and resize the images inside (GeneralizedRCNNTransform), so a layout given to the
input would not reach the backbone. A CPU trains in fp32 with the default layout unless asked otherwise.
``SIGHTLINE_CHANNELS_LAST`` (``auto``, ``1``, ``0``; or ``--channels-last``, ``__main__``) sets the memory format.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from sightline.contract import DETECTION

log = logging.getLogger(__name__)

CHANNELS_LAST_CHOICES = ("auto", "1", "0")
_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """What ran: ``name`` fp32, fp16 or bf16 (autocast's dtype), ``channels_last`` for weights and image batches."""

    name: str = "fp32"
    channels_last: bool = False
    requested: str = "auto"

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    @property
    def autocast(self) -> bool:
        return self.dtype is not None

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast_context(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device_type=device.type, dtype=self.dtype or torch.float32, enabled=self.autocast)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        # Only fp16 needs loss scaling (its range ends at 65504); bf16 has fp32's exponent.
        return torch.amp.GradScaler(device.type if device.type == "cuda" else "cpu",
                                    enabled=self.name == "fp16" and device.type == "cuda")

    def to_dict(self) -> dict[str, object]:
        return {"precision": self.name, "requested": self.requested,
                "memory_format": "channels_last" if self.channels_last else "contiguous"}


def choose(requested: str, device: torch.device, task: str, channels_last: str = "auto") -> Precision:
    """The precision to train with on ``device``; a request the device cannot honour falls back, logged."""
    name = requested
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            name = "bf16" if bf16 else "fp16"
        elif requested == "bf16" and not bf16:
            log.warning("precision bf16 was asked for but this GPU does not support it: training in fp16")
            name = "fp16"
    elif requested == "auto":
        name = "fp32"
    elif requested == "fp16":
        # CPU autocast in fp16 covers few operators and is slower than fp32; bf16 is CPU autocast's own dtype.
        log.warning("precision fp16 needs a GPU: training in fp32 on the CPU")
        name = "fp32"
    if name not in _DTYPES:
        raise ValueError(f"precision must be one of auto, fp32, fp16, bf16, got {requested!r}")
    if channels_last not in CHANNELS_LAST_CHOICES:
        raise ValueError(f"channels_last must be one of {', '.join(CHANNELS_LAST_CHOICES)}, got {channels_last!r}")
    last = channels_last == "1" or (channels_last == "auto" and device.type == "cuda" and task != DETECTION)
    return Precision(name, last, requested)
