"""RetrainOnNewData: a DatasetUpdated event on the Sightline bus -> new versions of the models that opted in
(logic in ``sightline.retraining``)."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import retraining

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("detail-type") == "ModelVersionFinished":  # start the version queued behind the finished one
        started = retraining.start_queued_version(str((event.get("detail") or {}).get("model_id", "")))
        return {"started": None if started is None else started["version"]}
    return retraining.retrain_for_dataset(event)
