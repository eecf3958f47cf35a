"""Models and their versions in the DynamoDB table (layout in ``sightline.keys`` and docs/architecture.md)."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.errors import Conflict, NotFound

TRAINING = "training"
READY = "ready"
FAILED = "failed"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_model_id() -> str:
    return f"mdl-{secrets.token_hex(6)}"


def _table() -> Any:
    return aws.table(get_settings().table_name)


def to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Plain JSON types back: whole Decimals become int, others float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [from_dynamo(v) for v in value]
    return value


_MODEL_FIELDS = (
    "model_id", "name", "task", "datasets", "template", "params", "status", "classes",
    "serving_version", "latest_version", "failure_reason", "created_at", "updated_at",
)
_VERSION_FIELDS = (
    "model_id", "version", "status", "template", "params", "datasets", "metrics", "artifacts", "promoted",
    "failure_reason", "execution_arn", "job_id", "classes", "created_at", "finished_at",
)


def _public(item: dict, fields: tuple[str, ...]) -> dict:
    plain = from_dynamo(item)
    return {field: plain.get(field) for field in fields}


def create_model(*, name: str, task: str, datasets: list[str], template: str, params: dict) -> tuple[dict, dict]:
    """A new model in status ``training`` with version 1 in status ``training``, written atomically."""
    model_id = new_model_id()
    created = now()
    model = {
        "pk": keys.model_pk(model_id),
        "sk": keys.META,
        "gsi1pk": keys.MODELS_INDEX_PK,
        "gsi1sk": f"{created}#{model_id}",
        "model_id": model_id,
        "name": name,
        "task": task,
        "datasets": datasets,
        "template": template,
        "params": to_dynamo(params),
        "status": TRAINING,
        "classes": [],
        "serving_version": None,
        "latest_version": 1,
        "failure_reason": None,
        "created_at": created,
        "updated_at": created,
    }
    version = _version_item(model_id, 1, template=template, params=params, datasets=datasets, created=created)
    aws.client("dynamodb")  # warm the client pool before the transaction
    _transact_put([model, version])
    return _public(model, _MODEL_FIELDS), _public(version, _VERSION_FIELDS)


def _version_item(model_id: str, version: int, *, template: str, params: dict, datasets: list[str], created: str) -> dict:
    return {
        "pk": keys.model_pk(model_id),
        "sk": keys.version_sk(version),
        "model_id": model_id,
        "version": version,
        "status": TRAINING,
        "template": template,
        "params": to_dynamo(params),
        "datasets": datasets,
        "metrics": None,
        "artifacts": {},
        "promoted": False,
        "failure_reason": None,
        "execution_arn": None,
        "job_id": None,
        "classes": [],
        "created_at": created,
        "finished_at": None,
    }


def _transact_put(items: list[dict]) -> None:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    table_name = get_settings().table_name
    aws.client("dynamodb").transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": table_name,
                    "Item": {k: serializer.serialize(v) for k, v in item.items()},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for item in items
        ]
    )


def get_model(model_id: str) -> dict:
    item = _table().get_item(Key={"pk": keys.model_pk(model_id), "sk": keys.META}, ConsistentRead=True).get("Item")
    if item is None:
        raise NotFound(f"model {model_id!r} does not exist", code="model_not_found")
    return _public(item, _MODEL_FIELDS)


def list_models() -> list[dict]:
    """Every model, newest first."""
    models: list[dict] = []
    kwargs: dict[str, Any] = {
        "IndexName": keys.GSI1,
        "KeyConditionExpression": Key("gsi1pk").eq(keys.MODELS_INDEX_PK),
        "ScanIndexForward": False,
    }
    while True:
        page = _table().query(**kwargs)
        models.extend(_public(item, _MODEL_FIELDS) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return models
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def get_version(model_id: str, version: int) -> dict:
    item = _table().get_item(
        Key={"pk": keys.model_pk(model_id), "sk": keys.version_sk(version)}, ConsistentRead=True
    ).get("Item")
    if item is None:
        get_model(model_id)  # a 404 for the model says more than one for the version
        raise NotFound(f"model {model_id!r} has no version {version}", code="version_not_found")
    return _public(item, _VERSION_FIELDS)


def serving_version(model_id: str) -> tuple[dict, dict]:
    """The model and the version that answers predictions; Conflict while none is ready."""
    model = get_model(model_id)
    if not model.get("serving_version"):
        if model["status"] == FAILED:
            raise Conflict(
                f"model {model_id!r} has no trained version: training failed ({model.get('failure_reason')})",
                code="model_not_ready",
            )
        raise Conflict(f"model {model_id!r} is still training and has no ready version yet", code="model_not_ready")
    return model, get_version(model_id, int(model["serving_version"]))


def _update(key: dict, missing: NotFound, condition: str | None, condition_values: dict | None, fields: dict) -> bool:
    """SET ``fields`` on an existing item; False when ``condition`` does not hold, ``missing`` when the item
    does not exist (without a condition)."""
    names = {f"#{k}": k for k in fields}
    values = {f":{k}": to_dynamo(v) for k, v in fields.items()}
    expression = "attribute_exists(pk)"
    if condition:
        expression = f"{expression} AND ({condition})"
        values.update({k: to_dynamo(v) for k, v in (condition_values or {}).items()})
    try:
        _table().update_item(
            Key=key,
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields),
            ConditionExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            if condition:
                return False
            raise missing from None
        raise


def update_version(
    model_id: str, version: int, condition: str | None = None, condition_values: dict | None = None, **fields: Any
) -> bool:
    """Set ``fields`` on the version; with ``condition`` (as for ``update_model``), returns False instead of
    writing when it does not hold."""
    return _update(
        {"pk": keys.model_pk(model_id), "sk": keys.version_sk(version)},
        NotFound(f"model {model_id!r} has no version {version}", code="version_not_found"),
        condition,
        condition_values,
        fields,
    )


def update_model(model_id: str, condition: str | None = None, condition_values: dict | None = None, **fields: Any) -> bool:
    """Set ``fields`` on the model; with ``condition`` (a DynamoDB condition over ``#name`` placeholders
    of the fields and ``condition_values``), returns False instead of writing when it does not hold."""
    return _update(
        {"pk": keys.model_pk(model_id), "sk": keys.META},
        NotFound(f"model {model_id!r} does not exist", code="model_not_found"),
        condition,
        condition_values,
        {**fields, "updated_at": now()},
    )


# A model created without a serving version stores serving_version as NULL; older items may lack it.
# Plain attribute names (not reserved words) so conditions work whatever fields the update sets.
_NO_SERVING_VERSION = "attribute_not_exists(serving_version) OR attribute_type(serving_version, :null_type)"


def set_serving_version(model_id: str, version: int, *, replacing: int | None, **fields: Any) -> bool:
    """Make ``version`` the serving version (model status ready) only if the serving version is still
    ``replacing`` (None: the model has none), so concurrent writers cannot undo each other's decisions.
    Returns False when another writer changed it first."""
    if replacing is None:
        condition, values = _NO_SERVING_VERSION, {":null_type": "NULL"}
    else:
        condition, values = "serving_version = :replacing", {":replacing": replacing}
    return update_model(
        model_id,
        condition=condition,
        condition_values=values,
        serving_version=version,
        status=READY,
        failure_reason=None,
        **fields,
    )


def fail_model_without_serving_version(model_id: str, reason: str) -> bool:
    """Mark the model failed with ``reason`` unless it serves a version: a failed retrain must not take a
    working model down. Returns whether the model was marked failed."""
    return update_model(
        model_id,
        condition=_NO_SERVING_VERSION,
        condition_values={":null_type": "NULL"},
        status=FAILED,
        failure_reason=reason,
    )


def raise_latest_version(model_id: str, version: int) -> None:
    """``latest_version`` only moves forward, whatever order versions finish in."""
    update_model(
        model_id,
        condition="attribute_not_exists(latest_version) OR latest_version < :latest_version",
        latest_version=version,
    )
