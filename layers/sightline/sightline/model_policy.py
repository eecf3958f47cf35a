"""A model's two policies, set at creation and changed with ``PATCH /v1/models/{id}``:

- ``retraining``: when new data starts a version (``auto``), how many images must have arrived since the
  newest version started (``min_new_images``), how long a burst of uploads is waited out before one version starts
  (``debounce_seconds``: each new event restarts the wait) and the least time between two versions started by new
  data (``cooldown_seconds``).
- ``promotion``: the gate a trained version passes to serve. ``metric_not_worse`` (the default) promotes it when
  its ``metric`` (null: the primary metric metrics.json names) is at least the serving version's plus
  ``min_improvement`` (negative: a tolerance); ``always`` promotes every trained version; ``never`` leaves
  promotion to ``POST .../promote``.

Models created before the policies have neither: they read as the defaults, with ``auto`` taken from the
model's ``retrain_on_new_data``.
"""
from __future__ import annotations

import math
import re
from typing import Any

from sightline.errors import BadRequest

GATE_METRIC_NOT_WORSE = "metric_not_worse"
GATE_ALWAYS = "always"
GATE_NEVER = "never"
GATES = (GATE_METRIC_NOT_WORSE, GATE_ALWAYS, GATE_NEVER)

MAX_MIN_NEW_IMAGES = 1_000_000
MAX_DEBOUNCE_SECONDS = 86_400  # a day
MAX_COOLDOWN_SECONDS = 7 * 86_400  # a week
MAX_METRIC_NAME_CHARS = 64
_METRIC_NAME = re.compile(r"[A-Za-z0-9_.-]+")

RETRAINING_DEFAULTS: dict[str, Any] = {
    "auto": False, "min_new_images": 0, "debounce_seconds": 0, "cooldown_seconds": 0,
}
PROMOTION_DEFAULTS: dict[str, Any] = {"gate": GATE_METRIC_NOT_WORSE, "metric": None, "min_improvement": 0.0}


def retraining_of(model: dict[str, Any]) -> dict[str, Any]:
    """The model's retraining policy, defaults filled in (a model from before policies: its flag)."""
    stored = dict(model.get("retraining") or {})
    if "on_new_data" in stored:  # the field's first name (2026-12-01), before the issue's own name ``auto``
        stored.setdefault("auto", stored.pop("on_new_data"))
    policy = {**RETRAINING_DEFAULTS, "auto": bool(model.get("retrain_on_new_data")), **stored}
    return {"auto": bool(policy["auto"]),
            **{name: int(policy[name]) for name in ("min_new_images", "debounce_seconds", "cooldown_seconds")}}


def promotion_of(model: dict[str, Any]) -> dict[str, Any]:
    """The model's promotion gate, defaults filled in."""
    policy = {**PROMOTION_DEFAULTS, **(model.get("promotion") or {})}
    return {"gate": str(policy["gate"]), "metric": policy["metric"], "min_improvement": float(policy["min_improvement"])}


# ---------------------------------------------------------------- validation of requests


def parse_retraining(value: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request's ``retraining`` object over ``current`` (the defaults at creation): fields left out keep their
    value. Raises ``BadRequest`` naming the first wrong field."""
    if not isinstance(value, dict):
        raise BadRequest("retraining must be an object with auto, min_new_images, debounce_seconds, "
                         "cooldown_seconds", code="invalid_retraining")
    _refuse_unknown("retraining", value, RETRAINING_DEFAULTS)
    policy = dict(current or RETRAINING_DEFAULTS)
    if "auto" in value:
        if not isinstance(value["auto"], bool):
            raise BadRequest(f"retraining.auto must be true or false, got {value['auto']!r}",
                             code="invalid_retraining")
        policy["auto"] = value["auto"]
    for name, maximum in (("min_new_images", MAX_MIN_NEW_IMAGES), ("debounce_seconds", MAX_DEBOUNCE_SECONDS),
                          ("cooldown_seconds", MAX_COOLDOWN_SECONDS)):
        if name in value:
            policy[name] = _whole_number(f"retraining.{name}", value[name], maximum)
    return policy


def parse_promotion(value: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request's ``promotion`` object over ``current``; raises ``BadRequest`` naming the first wrong field."""
    if not isinstance(value, dict):
        raise BadRequest("promotion must be an object with gate, metric, min_improvement", code="invalid_promotion")
    _refuse_unknown("promotion", value, PROMOTION_DEFAULTS)
    policy = dict(current or PROMOTION_DEFAULTS)
    if "gate" in value:
        if value["gate"] not in GATES:
            raise BadRequest(f"promotion.gate must be one of {', '.join(GATES)}, got {value['gate']!r}",
                             code="invalid_promotion")
        policy["gate"] = value["gate"]
    if "metric" in value:
        metric = value["metric"]
        if metric is not None and (not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric)
                                   or len(metric) > MAX_METRIC_NAME_CHARS):
            raise BadRequest(f"promotion.metric must be null (the primary metric) or a metric name of 1 to "
                             f"{MAX_METRIC_NAME_CHARS} letters, digits, '_', '.', '-', got {metric!r}",
                             code="invalid_promotion")
        policy["metric"] = metric
    if "min_improvement" in value:
        number = value["min_improvement"]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
                or not -1.0 <= number <= 1.0:
            raise BadRequest(f"promotion.min_improvement must be a number from -1 to 1 (negative: a tolerance), "
                             f"got {number!r}", code="invalid_promotion")
        policy["min_improvement"] = float(number)
    return policy


def _refuse_unknown(name: str, value: dict[str, Any], known: dict[str, Any]) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise BadRequest(f"{name} has unknown fields: {', '.join(f'{name}.{field}' for field in unknown)} "
                         f"(allowed: {', '.join(known)})", code=f"invalid_{name}")


def _whole_number(name: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise BadRequest(f"{name} must be a whole number from 0 to {maximum:,}, got {value!r}",
                         code=f"invalid_{name.split('.', 1)[0]}")
    return value
