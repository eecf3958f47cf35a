"""The promotion gate: whether a trained version replaces the serving one, by the model's ``promotion`` policy
(``sightline.model_policy``), and the comparison recorded on the version either way.

A model that serves nothing takes its first trained version whatever the gate: it must serve something to be
ready. ``always`` promotes every trained version, ``never`` none (``POST .../promote`` does it by hand), and
``metric_not_worse`` compares one metric of both versions: the gate's ``metric`` or, when null, the primary metric
metrics.json names (both versions must name the same one). The new version passes when its score is at least the
serving one's plus ``min_improvement``; a serving version without that score is passed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sightline.model_policy import GATE_ALWAYS, GATE_NEVER


@dataclass(frozen=True)
class Comparison:
    """What the gate compared and decided (stored as the version's ``promotion``)."""

    gate: str
    passed: bool
    reason: str
    metric: str | None
    score: float | None
    serving_version: int | None
    serving_score: float | None
    min_improvement: float

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def compare(policy: dict[str, Any], metrics: dict[str, Any], serving_version: int | None,
            serving_metrics: dict[str, Any] | None) -> Comparison:
    """Apply ``policy`` to a trained version's ``metrics`` against the serving version's."""
    metric = policy.get("metric") or metrics.get("primary_metric")
    score = _number(metrics.get(metric)) if isinstance(metric, str) else None
    serving = serving_metrics or {}
    serving_score = _number(serving.get(metric)) if isinstance(metric, str) else None
    margin = float(policy.get("min_improvement") or 0.0)
    gate = str(policy.get("gate"))

    def decided(passed: bool, reason: str) -> Comparison:
        return Comparison(gate=gate, passed=passed, reason=reason, metric=metric if isinstance(metric, str) else None,
                          score=score, serving_version=serving_version, serving_score=serving_score,
                          min_improvement=margin)

    if serving_version is None:
        return decided(True, "nothing served yet: the first trained version serves")
    if gate == GATE_ALWAYS:
        return decided(True, "the gate promotes every trained version")
    if gate == GATE_NEVER:
        return decided(False, "the gate promotes no version by itself (POST .../promote does)")
    if score is None:
        return decided(False, f"the new version has no numeric {metric!r} to compare")
    if not policy.get("metric") and serving.get("primary_metric") not in (None, metric):
        return decided(False, f"the versions' primary metrics differ ({serving.get('primary_metric')} against "
                              f"{metric}); their scores do not compare")
    if serving_score is None:
        return decided(True, f"the serving version has no {metric} to compare; a measured one is better")
    needed = serving_score + margin
    if score >= needed:
        return decided(True, f"{metric} {score:.4g} is at least {needed:.4g} (serving {serving_score:.4g} "
                             f"{margin:+.4g})")
    return decided(False, f"{metric} {score:.4g} is below {needed:.4g} (serving {serving_score:.4g} {margin:+.4g})")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        return None
    return float(value)
