"""Powertools' Metrics (CloudWatch EMF) and Tracer (X-Ray), one of each per function process.

The handlers decorate themselves with ``metrics.log_metrics`` and ``tracer.capture_lambda_handler`` and count what
they did (``count``); the namespace comes from the template (``POWERTOOLS_METRICS_NAMESPACE`` through
``sightline.config``) and the service from ``POWERTOOLS_SERVICE_NAME``. Tracing turns itself off outside Lambda
and wherever ``POWERTOOLS_TRACE_DISABLED`` is set (the local stack has no X-Ray daemon).
"""
from __future__ import annotations

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from sightline.config import get_settings

metrics = Metrics(namespace=get_settings().metrics_namespace)
tracer = Tracer()


def count(name: str, value: float = 1) -> None:
    """Add ``value`` to the count metric ``name`` of this invocation."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
