"""Which version of a model answers a prediction, remembered for a few seconds per warm container.

Reading the model and its serving version costs two DynamoDB reads; for a predict that runs a model in a few
milliseconds they were most of the request. A warm container remembers the answer for ``SERVING_CACHE_SECONDS``
(5 by default, the template's setting): after a promotion the new version answers within that many seconds,
without a cold start (the new version's session is simply the next one the predictor cache loads). A pinned
version (``version`` in the request) is remembered the same way. Refusals are never remembered: a model that is
still training answers as soon as it is ready.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sightline import model_registry
from sightline.config import get_settings
from sightline.contract import VersionStatus
from sightline.errors import Conflict

# Models remembered per container; an LRU past this (a container that serves many models reads more often).
CAPACITY = 256

Lookup = tuple[dict, dict]  # (model, version) as model_registry returns them


class ServingCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic, capacity: int = CAPACITY) -> None:
        self._clock = clock
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, int | None], tuple[float, Lookup]] = OrderedDict()
        self._lock = threading.Lock()  # the local stack may serve requests from threads

    def lookup(self, model_id: str, version: int | None = None) -> Lookup:
        """The model and the version that answers: the serving one, or ``version`` when the caller pinned it."""
        ttl = get_settings().serving_cache_seconds
        key = (model_id, version)
        now = self._clock()
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and cached[0] > now:
                self._entries.move_to_end(key)
                return cached[1]
        found = _read(model_id, version)
        if ttl > 0:
            with self._lock:
                self._entries[key] = (now + ttl, found)
                self._entries.move_to_end(key)
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _read(model_id: str, version: int | None) -> Lookup:
    if version is None:
        return model_registry.serving_version(model_id)
    model = model_registry.get_model(model_id)
    pinned = model_registry.get_version(model_id, version)
    if pinned.get("status") != VersionStatus.READY or not (pinned.get("artifacts") or {}).get("model"):
        raise Conflict(f"version {version} of model {model_id!r} is {pinned.get('status')} and cannot answer "
                       "predictions: pin a ready version", code="version_not_ready")
    return model, pinned


_cache = ServingCache()


def serving(model_id: str, version: int | None = None) -> Lookup:
    """The process-wide remembered lookup (see the module's docstring)."""
    return _cache.lookup(model_id, version)


def clear_serving_cache() -> None:
    _cache.clear()
