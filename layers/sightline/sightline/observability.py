"""Powertools' Metrics (CloudWatch EMF) and Tracer (X-Ray), one of each per function process.

The handlers decorate themselves with ``metrics.log_metrics`` and ``tracer.capture_lambda_handler`` and count what
they did (``count``); the namespace comes from the template (``POWERTOOLS_METRICS_NAMESPACE`` through
``sightline.config``) and the service from ``POWERTOOLS_SERVICE_NAME``. Tracing turns itself off outside Lambda
and wherever ``POWERTOOLS_TRACE_DISABLED`` is set (the local stack has no X-Ray daemon).

The tracer is made when first imported (``from sightline.observability import tracer``), not with this module:
Powertools' Tracer imports the X-Ray SDK, which took 0.3 to 0.56 s of a cold start here. The predict function,
whose cold start users wait on, takes only the metrics; its invocations are still traced by Lambda's active
tracing (the function's segments), without the SDK's subsegments.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from sightline.config import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

metrics = Metrics(namespace=get_settings().metrics_namespace)
_tracer: Tracer | None = None


def count(name: str, value: float = 1) -> None:
    """Add ``value`` to the count metric ``name`` of this invocation."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def __getattr__(name: str) -> Any:
    # PEP 562: ``tracer`` is built on first use (see the module's docstring).
    global _tracer
    if name != "tracer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer()
    return _tracer
