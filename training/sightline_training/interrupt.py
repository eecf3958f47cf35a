"""SIGTERM handling: Batch and Spot send it before killing the container.

The handler only records the request; the training loop checks it between steps, so a checkpoint being
written or uploaded is always finished first. The job then exits 143 and a Batch retry resumes from the
last completed epoch.
"""
from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from sightline_training.errors import Interrupted

log = logging.getLogger(__name__)


class StopRequest:
    """A context manager that turns SIGTERM into :class:`Interrupted` at the next :meth:`check`."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        except ValueError:  # not the main thread (an embedding caller): SIGTERM keeps its default
            log.warning("not on the main thread: SIGTERM will not stop the job gracefully")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            # None means the old handler was not set from Python; the default is the closest we can restore.
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM received: stopping at the next step")
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise Interrupted("interrupted by SIGTERM; the last completed epoch is checkpointed, a retry resumes")
