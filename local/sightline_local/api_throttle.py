"""API Gateway's throttles and quotas: token buckets per stage method (MethodSettings) and per usage key (the
usage plan's Throttle and Quota)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable


class TokenBucket:
    """``rate`` requests a second on average, ``burst`` at once: API Gateway's throttle."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = float(rate), max(1, int(burst)), clock
        self.tokens = float(self.burst)
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _decoded(path: str) -> str:
    # MethodSettings' ResourcePath: "/" then the resource path with its slashes escaped ("/~1v1~1models").
    return path[1:].replace("~1", "/") if path.startswith("/~1") else path


class Throttles:
    def __init__(self, method_settings: list[dict], usage_plan: dict | None,
                 clock: Callable[[], float] = time.monotonic,
                 today: Callable[[], str] = lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d")) -> None:
        self.clock, self.today = clock, today
        self.settings = [s for s in method_settings if "ThrottlingRateLimit" in s or "ThrottlingBurstLimit" in s]
        plan = usage_plan or {}
        self.key_throttle = plan.get("Throttle")
        self.quota = plan.get("Quota")
        self._buckets: dict[tuple, TokenBucket] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _setting(self, method: str, template: str) -> dict | None:
        exact = [s for s in self.settings
                 if _decoded(s.get("ResourcePath", "")) == template and s.get("HttpMethod") in (method, "*")]
        default = [s for s in self.settings if s.get("ResourcePath") == "/*" and s.get("HttpMethod") == "*"]
        return (exact or default or [None])[0]

    def method_allows(self, method: str, template: str) -> bool:
        """The stage's throttle of this method (all callers together)."""
        setting = self._setting(method, template)
        if setting is None:
            return True
        key = ("method", _decoded(setting["ResourcePath"]), setting["HttpMethod"])
        return self._take(key, setting.get("ThrottlingRateLimit", 10_000), setting.get("ThrottlingBurstLimit", 5_000))

    def key_allows(self, usage_key: str) -> str | None:
        """None, or the gateway response a usage key earns: ``THROTTLED`` or ``QUOTA_EXCEEDED``."""
        if self.key_throttle and not self._take(("key", usage_key), self.key_throttle.get("RateLimit", 10_000),
                                                self.key_throttle.get("BurstLimit", 5_000)):
            return "THROTTLED"
        if self.quota and self.quota.get("Period") == "DAY":
            with self._lock:
                counted = (usage_key, self.today())
                self._counts[counted] = self._counts.get(counted, 0) + 1
                if self._counts[counted] > int(self.quota["Limit"]):
                    return "QUOTA_EXCEEDED"
        return None

    def _take(self, key: tuple, rate: float, burst: int) -> bool:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, burst, self.clock)
            return bucket.take()
