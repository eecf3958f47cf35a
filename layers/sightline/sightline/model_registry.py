"""Models and their versions in the DynamoDB table (layout in ``sightline.keys`` and docs/architecture.md)."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from sightline import aws, keys, model_policy
from sightline.aws import from_dynamo, to_dynamo, utc_now
from sightline.config import get_settings
from sightline.contract import ModelStatus, VersionStatus
from sightline.errors import Conflict, NotFound
from sightline.training_spec import TrainingSpec

# Why a version was started (the version's ``trigger.type``).
TRIGGER_CREATE = "create"
TRIGGER_API = "api"
TRIGGER_DATASET_UPDATED = "dataset_updated"

MAX_VERSIONS_PER_PAGE = 100
# Bounded: each lost race means another writer changed the model item in between, which happens rarely.
_ALLOCATION_ATTEMPTS = 10


class VersionInProgress(Conflict):
    """A version of the model is still training: one training run per model at a time."""

    def __init__(self, message: str, *, version: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.version = version

    code = "version_in_progress"


def new_model_id() -> str:
    return f"mdl-{secrets.token_hex(6)}"


def _table() -> Any:
    return aws.table(get_settings().table_name)


def model_pointers(model_id: str, sk_prefix: str) -> list[dict]:
    """The items under the model's partition whose sort key starts with ``sk_prefix``: the pointers that
    evaluations and batch predictions leave there, so deleting the model finds them."""
    return list(aws.query_items(
        _table(), KeyConditionExpression=Key("pk").eq(keys.model_pk(model_id)) & Key("sk").begins_with(sk_prefix),
        ConsistentRead=True))


_MODEL_FIELDS = (
    "model_id", "name", "task", "datasets", "template", "params", "status", "classes",
    "serving_version", "latest_version", "retrain_on_new_data", "failure_reason", "created_at", "updated_at",
    "retraining", "promotion",
)
_VERSION_FIELDS = (
    "model_id", "version", "status", "template", "params", "datasets", "trigger", "metrics", "artifacts",
    "promoted", "failure_reason", "execution_arn", "job_id", "classes", "snapshot", "created_at", "finished_at",
    "weights", "promotion",
    # {"model": {"version_id", "sha256"}, "labels": {...}}: the exact objects predict loads (workflow.record_version);
    # absent on versions recorded before it.
    "integrity",
)


def _public(item: dict, fields: tuple[str, ...]) -> dict:
    plain = from_dynamo(item)
    return {field: plain.get(field) for field in fields}


def _public_model(item: dict) -> dict:
    model = _public(item, _MODEL_FIELDS)
    # Both policies read with their defaults (absent on models created before them; see model_policy).
    model["retraining"] = model_policy.retraining_of(model)
    model["promotion"] = model_policy.promotion_of(model)
    model["retrain_on_new_data"] = model["retraining"]["auto"]
    return model


def _model_state(item: dict) -> dict:
    """The public model plus what retraining decides on: each dataset's training-data digest and image count
    when the newest version was started (``dataset_digests``, ``dataset_images``) and the debounce under way."""
    return {**_public_model(item), "dataset_digests": from_dynamo(item.get("dataset_digests") or {}),
            "dataset_images": from_dynamo(item.get("dataset_images") or {}),
            "retrain_debounce": from_dynamo(item.get("retrain_debounce")) if item.get("retrain_debounce") else None}


def create_model(
    *,
    name: str,
    task: str,
    datasets: list[str],
    template: str,
    params: dict,
    retrain_on_new_data: bool = False,
    dataset_digests: dict[str, str | None] | None = None,
    retraining: dict | None = None,
    promotion: dict | None = None,
    dataset_images: dict[str, int] | None = None,
) -> tuple[dict, dict]:
    """A new model in status ``training`` with version 1 in status ``training``, written atomically."""
    retraining = {**model_policy.RETRAINING_DEFAULTS, "auto": retrain_on_new_data, **(retraining or {})}
    model_id = new_model_id()
    created = utc_now()
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
        "status": ModelStatus.TRAINING,
        "classes": [],
        "serving_version": None,
        # The version counter: the newest version's number (see create_version).
        "latest_version": 1,
        # Kept equal to retraining.auto: the MODELS index filter of models_retraining_on reads it.
        "retrain_on_new_data": bool(retraining["auto"]),
        "retraining": retraining,
        "promotion": {**model_policy.PROMOTION_DEFAULTS, **(promotion or {})},
        "dataset_digests": dataset_digests or {},
        "dataset_images": dataset_images or {},
        "failure_reason": None,
        "created_at": created,
        "updated_at": created,
    }
    version = _version_item(
        model_id, 1, template=template, params=params, datasets=datasets, created=created,
        trigger={"type": TRIGGER_CREATE},
    )
    aws.client("dynamodb")  # warm the client pool before the transaction
    _transact_put([model, version])
    return _public_model(model), _public(version, _VERSION_FIELDS)


def _version_item(
    model_id: str,
    version: int,
    *,
    template: str,
    params: dict,
    datasets: list[str],
    created: str,
    trigger: dict | None = None,
) -> dict:
    return {
        "pk": keys.model_pk(model_id),
        "sk": keys.version_sk(version),
        "model_id": model_id,
        "version": version,
        "status": VersionStatus.TRAINING,
        "template": template,
        "params": to_dynamo(params),
        "datasets": datasets,
        "trigger": trigger,
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


_serializer = TypeSerializer()


def _serialized(values: dict) -> dict:
    return {k: _serializer.serialize(to_dynamo(v)) for k, v in values.items()}


def _transact_put(items: list[dict]) -> None:
    table_name = get_settings().table_name
    aws.client("dynamodb").transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": table_name,
                    "Item": _serialized(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for item in items
        ]
    )


def _model_item(model_id: str) -> dict:
    item = _table().get_item(Key={"pk": keys.model_pk(model_id), "sk": keys.META}, ConsistentRead=True).get("Item")
    if item is None:
        raise NotFound(f"model {model_id!r} does not exist", code="model_not_found")
    return item


def get_model(model_id: str) -> dict:
    return _public_model(_model_item(model_id))


def retraining_state(model_id: str) -> dict:
    """The model with what retraining decides on (see ``_model_state``), read strongly consistent."""
    return _model_state(_model_item(model_id))


def create_version(
    model_id: str,
    spec: TrainingSpec,
    *,
    trigger: dict,
    precondition: Callable[[dict], None] | None = None,
) -> tuple[dict, dict]:
    """Allocate the model's next version number and write that version in status ``training``, atomically.

    One transaction raises the counter (``latest_version``) from the value just read, checks that the version
    it names is not training, and creates the new version item, so concurrent callers never share or reuse a
    number and never start two runs at once (``VersionInProgress``). The model takes ``spec`` as its current
    datasets, template and params; it becomes ``training`` only when it serves no version (a serving model
    stays ``ready`` and keeps answering predictions). ``precondition`` sees the model as read (with
    ``dataset_digests``) before each attempt and may raise to refuse. Returns (model as read, new version).
    """
    for _ in range(_ALLOCATION_ATTEMPTS):
        item = _model_item(model_id)
        model = _model_state(item)
        current = int(model["latest_version"])
        if _version_status(model_id, current) == VersionStatus.TRAINING:
            raise VersionInProgress(
                f"model {model_id} version {current} is still training; start another when it has finished",
                version=current,
            )
        if precondition is not None:
            precondition(model)
        number = current + 1
        version = _version_item(
            model_id, number, template=spec.template, params=spec.params, datasets=spec.datasets,
            created=utc_now(), trigger=trigger,
        )
        if _allocate(model_id, model, version, spec):
            return model, _public(version, _VERSION_FIELDS)
    raise Conflict(f"could not start a new version of model {model_id}: too many concurrent changes")


def latest_version_status(model_id: str) -> str | None:
    return _version_status(model_id, int(_model_item(model_id)["latest_version"]))


def pending_version(model_id: str) -> dict | None:
    """The version queued behind the training one: its trigger and when it was queued (None when none is)."""
    pending = _model_item(model_id).get("pending_version")
    return {"trigger": from_dynamo(pending["trigger"]), "queued_at": pending["queued_at"]} if pending else None


def take_pending_version(model_id: str) -> dict | None:
    """Remove and return the version queued behind a training one (atomically: one caller gets it)."""
    try:
        response = _table().update_item(
            Key={"pk": keys.model_pk(model_id), "sk": keys.META},
            UpdateExpression="REMOVE pending_version",
            ConditionExpression="attribute_exists(pending_version)",
            ReturnValues="UPDATED_OLD",
        )
    except ClientError as error:
        if aws.is_condition_failed(error):
            return None
        raise
    return from_dynamo(response["Attributes"]["pending_version"])


def _version_status(model_id: str, version: int) -> str | None:
    item = _table().get_item(
        Key={"pk": keys.model_pk(model_id), "sk": keys.version_sk(version)},
        ConsistentRead=True,
        ProjectionExpression="#status",
        ExpressionAttributeNames={"#status": "status"},
    ).get("Item")
    return item.get("status") if item else None


def _allocate(model_id: str, model: dict, version: dict, spec: TrainingSpec) -> bool:
    """The allocation transaction; False when the model or its newest version changed since they were read."""
    current = int(model["latest_version"])
    fields: dict[str, Any] = {
        "latest_version": version["version"],
        "datasets": spec.datasets,
        "template": spec.template,
        "params": spec.params,
        "dataset_digests": spec.dataset_digests,
        "dataset_images": spec.dataset_images,
        "updated_at": version["created_at"],
    }
    condition = "latest_version = :current"
    values: dict[str, Any] = {":current": current}
    if model.get("serving_version") is None:
        # Nothing serves yet, so the model is training again; conditional, so a promotion that lands in
        # between is not overwritten with "training".
        fields["status"] = ModelStatus.TRAINING
        condition += f" AND ({_NO_SERVING_VERSION})"
        values[":null_type"] = "NULL"
    values.update({f":{name}": value for name, value in fields.items()})
    table_name = get_settings().table_name
    try:
        aws.client("dynamodb").transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table_name,
                        "Key": _serialized({"pk": keys.model_pk(model_id), "sk": keys.META}),
                        "UpdateExpression": "SET " + ", ".join(f"#{name} = :{name}" for name in fields),
                        "ConditionExpression": f"attribute_exists(pk) AND {condition}",
                        "ExpressionAttributeNames": {f"#{name}": name for name in fields},
                        "ExpressionAttributeValues": _serialized(values),
                    }
                },
                {
                    # Only the newest version can be training (each one starts after the one before finished).
                    "ConditionCheck": {
                        "TableName": table_name,
                        "Key": _serialized({"pk": keys.model_pk(model_id), "sk": keys.version_sk(current)}),
                        "ConditionExpression": "attribute_not_exists(pk) OR #status <> :training",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": _serialized({":training": VersionStatus.TRAINING}),
                    }
                },
                {
                    "Put": {
                        "TableName": table_name,
                        "Item": _serialized(version),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        return True
    except ClientError as error:
        if aws.is_transaction_lost(error):
            return False  # read again: either someone else allocated (the next read says so) or a write raced
        raise


def list_versions(model_id: str, *, limit: int = MAX_VERSIONS_PER_PAGE, before: int | None = None) -> tuple[list[dict], int | None]:
    """The model's versions newest first, at most ``limit`` of them, only those older than ``before`` when
    given; and the ``before`` of the next page (None on the last one)."""
    get_model(model_id)  # 404 for an unknown model, not an empty list
    upper = keys.version_sk(before - 1) if before is not None else keys.version_sk(999_999)
    page = _table().query(
        KeyConditionExpression=Key("pk").eq(keys.model_pk(model_id)) & Key("sk").between(keys.version_sk(0), upper),
        ScanIndexForward=False,
        ConsistentRead=True,
        Limit=limit,
    )
    versions = [_public(item, _VERSION_FIELDS) for item in page.get("Items", [])]
    # Numbers run 1, 2, 3... without gaps (each is allocated with its item), so a page ending at 1 is the last.
    if "LastEvaluatedKey" in page and versions and versions[-1]["version"] > 1:
        return versions, versions[-1]["version"]
    return versions, None


def models_retraining_on(dataset: str) -> list[dict]:
    """Models with ``retrain_on_new_data`` whose datasets include ``dataset`` (with ``dataset_digests``).

    Reads the whole MODELS index and filters: one query per dataset event, cheap up to thousands of models;
    beyond that, per-dataset subscription items would avoid reading every model.
    """
    items = aws.query_items(
        _table(),
        IndexName=keys.GSI1,
        KeyConditionExpression=Key("gsi1pk").eq(keys.MODELS_INDEX_PK),
        FilterExpression=Attr("retrain_on_new_data").eq(True) & Attr("datasets").contains(dataset),
    )
    return [_model_state(item) for item in items]


def versions_training_on(dataset: str) -> list[tuple[str, int]]:
    """``(model id, version)`` of every version that is training on ``dataset`` now: what stops its deletion."""
    training = []
    for model in aws.query_items(_table(), IndexName=keys.GSI1,
                                 KeyConditionExpression=Key("gsi1pk").eq(keys.MODELS_INDEX_PK)):
        versions = aws.query_items(
            _table(),
            KeyConditionExpression=Key("pk").eq(model["pk"]) & Key("sk").begins_with(keys.version_sk(0)[:8]),
            FilterExpression=Attr("status").eq(str(VersionStatus.TRAINING)) & Attr("datasets").contains(dataset),
            ConsistentRead=True,
        )
        training += [(str(model["model_id"]), int(version["version"])) for version in versions]
    return training


def list_models() -> list[dict]:
    """Every model, newest first."""
    items = aws.query_items(
        _table(), IndexName=keys.GSI1, KeyConditionExpression=Key("gsi1pk").eq(keys.MODELS_INDEX_PK), ScanIndexForward=False
    )
    return [_public_model(item) for item in items]


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
        if model["status"] == ModelStatus.FAILED:
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
        if aws.is_condition_failed(error):
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
        {**fields, "updated_at": utc_now()},
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
        status=ModelStatus.READY,
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
        status=ModelStatus.FAILED,
        failure_reason=reason,
    )


def set_policies(model_id: str, *, retraining: dict | None = None, promotion: dict | None = None) -> dict:
    """Replace the model's retraining and/or promotion policy (validated by ``model_policy``); the model."""
    fields: dict[str, Any] = {}
    if retraining is not None:
        fields.update(retraining=retraining, retrain_on_new_data=bool(retraining["auto"]))
    if promotion is not None:
        fields["promotion"] = promotion
    if fields:
        update_model(model_id, **fields)
    return get_model(model_id)


def set_retrain_debounce(model_id: str, debounce: dict | None, *, replacing_token: str | None = None) -> bool:
    """Write (or, with None, clear) the model's debounce of new data; with ``replacing_token`` only while the
    stored debounce is that one. False when it was not."""
    condition, values = (None, None) if replacing_token is None else (
        "retrain_debounce.#token = :token", {":token": replacing_token})
    names = {"#token": "token"} if replacing_token is not None else {}
    key = {"pk": keys.model_pk(model_id), "sk": keys.META}
    expression = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
    try:
        if debounce is None:
            _table().update_item(Key=key, UpdateExpression="REMOVE retrain_debounce", ConditionExpression=expression,
                                 **({"ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
                                    if values else {}))
        else:
            _table().update_item(Key=key, UpdateExpression="SET retrain_debounce = :debounce",
                                 ConditionExpression=expression,
                                 ExpressionAttributeValues={":debounce": to_dynamo(debounce), **(values or {})},
                                 **({"ExpressionAttributeNames": names} if names else {}))
        return True
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise


def raise_latest_version(model_id: str, version: int) -> None:
    """``latest_version`` only moves forward, whatever order versions finish in."""
    update_model(
        model_id,
        condition="attribute_not_exists(latest_version) OR latest_version < :latest_version",
        latest_version=version,
    )
