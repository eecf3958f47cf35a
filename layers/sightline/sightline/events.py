"""Domain events on the Sightline EventBridge bus (source ``sightline``)."""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from sightline import aws
from sightline.config import get_settings

SOURCE = "sightline"
logger = Logger(child=True)


def publish(detail_type: str, detail: dict[str, Any]) -> None:
    """Publish one event. A failed publish is logged, never raised: events notify, the table is the truth."""
    try:
        response = aws.client("events").put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": get_settings().event_bus_name,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            logger.warning("event not accepted", extra={"detail_type": detail_type, "response": response["Entries"]})
    except Exception:  # noqa: BLE001 - see docstring
        logger.exception("could not publish event", extra={"detail_type": detail_type})
