"""The REST API (docs/openapi.yaml) except predict, which is its own function.

API Gateway checks the API key; this module validates requests, talks to the registries and starts training.
Every error answer is ``{"error": {"code", "message"}}``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from sightline import model_policy, model_registry, retraining, templates, training_spec, version_lifecycle, workflow
from sightline import api_keys, artifacts, batch_predictions, evaluations
from sightline.contract import TASKS, ModelStatus, VersionStatus
from sightline.datasets import deletion, labelled_images, snapshots, upload_status, uploads
from sightline.datasets import store as dataset_store
from sightline.datasets.paths import is_valid_dataset_name
from sightline.errors import BadRequest, NotFound, SightlineError
from sightline.http_events import json_document
from sightline import public_errors

logger = Logger(child=True)
app = APIGatewayRestResolver()

MAX_MODEL_NAME_CHARS = 128
# What GET /v1/models/{id} shows for a ready model while a newer version trains (never stored).
RETRAINING = "retraining"
CREATE_MODEL_FIELDS = ("name", "task", "datasets", "template", "params", "retrain_on_new_data", "retraining",
                       "promotion")
UPDATE_MODEL_FIELDS = ("retraining", "promotion")
CREATE_VERSION_FIELDS = ("datasets", "template", "params")

# (method, path) of every route served here, in the resolver's syntax: the 405 answer and the spec test use it.
ROUTES: list[tuple[str, str]] = []


def route(method: str, path: str) -> Callable[[Callable], Callable]:
    def register(function: Callable) -> Callable:
        ROUTES.append((method, path))
        return app.route(path, method=method)(function)

    return register


# ---------------------------------------------------------------- answers


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, default=str),
        headers=headers,
    )


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


@app.exception_handler(SightlineError)
def _sightline_error(error: SightlineError) -> Response:
    if error.status >= 500:
        # Server-side messages may quote AWS (ARNs, account ids): the log keeps them, the caller gets a reference.
        logger.error("request failed", extra={"code": error.code, "error": error.message})
        return _referenced_error(error.status, error.code)
    return error_response(error.status, error.code, error.message)


def _referenced_error(status: int, code: str) -> Response:
    reference = app.current_event.request_context.request_id or ""
    return json_response(status, public_errors.referenced(code, reference))


@app.not_found
def _no_such_route(_: NotFoundError) -> Response:
    method = app.current_event.http_method.upper()
    path = app.current_event.path
    allowed = sorted({m for m, p in ROUTES if _path_pattern(p).fullmatch(path)})
    if allowed:
        return error_response(
            405,
            "method_not_allowed",
            f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})",
            headers={"Allow": ", ".join(allowed)},
        )
    return error_response(404, "not_found", f"no route {method} {path}")


@app.exception_handler(Exception)
def _unexpected_error(error: Exception) -> Response:
    # Details stay in the log: the caller learns only that it was not their fault.
    logger.exception("unexpected error", extra={"error_type": type(error).__name__})
    return _referenced_error(500, "internal_error")


def _path_pattern(path: str) -> re.Pattern[str]:
    # "/v1/models/<model_id>" -> "/v1/models/[^/]+" (re.escape leaves < and > alone)
    return re.compile(re.sub(r"<[^>/]+>", "[^/]+", re.escape(path)))


# ---------------------------------------------------------------- routes


@route("GET", "/v1/templates")
def list_templates() -> dict:
    return {
        "templates": [
            {**template.describe(), "default_for_task": templates.DEFAULT_TEMPLATE[template.task] == template.id}
            for template in templates.TEMPLATES.values()
        ]
    }


@route("GET", "/v1/datasets")
def list_datasets() -> dict:
    query = app.current_event.query_string_parameters or {}
    limit = _positive_int(query.get("limit"), "limit", default=dataset_store.MAX_DATASETS_PER_PAGE,
                          maximum=dataset_store.MAX_DATASETS_PER_PAGE)
    after = query.get("after")
    if after is not None and not is_valid_dataset_name(after):
        raise BadRequest(f"after must be a dataset name (the previous page's next_after), got {after!r}",
                         code="invalid_after")
    datasets, next_after = dataset_store.list_dataset_summaries(limit=limit, after=after)
    return {"datasets": datasets, "next_after": next_after}


@route("GET", "/v1/datasets/<name>")
def get_dataset(name: str) -> dict:
    dataset = dataset_store.get_dataset(name)
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist", code="dataset_not_found")
    return dataset


@route("DELETE", "/v1/datasets/<name>")
def delete_dataset(name: str) -> Response:
    """Accepted: the dataset is ``deleting`` until its files and items are gone, then 404."""
    return json_response(202, deletion.request_deletion(name), headers={"Location": f"/v1/datasets/{name}"})


@route("GET", "/v1/datasets/<name>/issues")
def list_dataset_issues(name: str) -> dict:
    query = app.current_event.query_string_parameters or {}
    _existing_dataset(name)
    limit = _positive_int(query.get("limit"), "limit", default=dataset_store.MAX_ISSUES_PER_PAGE,
                          maximum=dataset_store.MAX_ISSUES_PER_PAGE)
    after = query.get("after")
    if after is not None and not re.fullmatch(r"[0-9]{1,7}", after):
        raise BadRequest(f"after must be the previous page's next_after, got {after!r}", code="invalid_after")
    issues, next_after = dataset_store.list_issues(name, limit=limit, after=None if after is None else int(after))
    return {"issues": issues, "next_after": None if next_after is None else str(next_after)}


@route("GET", "/v1/datasets/<name>/images")
def list_dataset_images(name: str) -> dict:
    query = app.current_event.query_string_parameters or {}
    _existing_dataset(name)
    limit = _positive_int(query.get("limit"), "limit", default=dataset_store.MAX_IMAGES_PER_PAGE,
                          maximum=dataset_store.MAX_IMAGES_PER_PAGE)
    cursor = query.get("cursor")
    if cursor is not None and not re.fullmatch(r"[0-9a-f]{64}", cursor):
        raise BadRequest(f"cursor must be the previous page's next_cursor, got {cursor[:80]!r}", code="invalid_cursor")
    label = query.get("class")
    if label is not None and not label.strip():
        raise BadRequest("class must name a class of the dataset", code="invalid_class")
    images, next_cursor = dataset_store.list_images(name, label=label, limit=limit, after=cursor)
    return {"images": images, "next_cursor": next_cursor}


@route("GET", "/v1/datasets/<name>/versions")
def list_dataset_versions(name: str) -> dict:
    """The dataset's training snapshots, newest first."""
    _existing_dataset(name)
    return {"versions": snapshots.list_snapshots(name)}


def _existing_dataset(name: str) -> None:
    if dataset_store.get_dataset_summary(name) is None:
        raise NotFound(f"dataset {name!r} does not exist", code="dataset_not_found")


@route("POST", "/v1/datasets/<name>/uploads")
def create_uploads(name: str) -> dict:
    return uploads.create_uploads(name, _json_body())


@route("POST", "/v1/datasets/<name>/uploads/complete")
def complete_upload(name: str) -> dict:
    return uploads.complete_upload(name, _json_body())


@route("POST", "/v1/datasets/<name>/uploads/abort")
def abort_upload(name: str) -> dict:
    return uploads.abort_upload(name, _json_body())


@route("POST", "/v1/datasets/<name>/uploads/status")
def uploads_status(name: str) -> dict:
    return upload_status.upload_status(name, _json_body())


@route("POST", "/v1/datasets/<name>/images")
def add_image(name: str) -> Response:
    return json_response(202, labelled_images.add_image(name, _json_body()), headers={"Location": f"/v1/datasets/{name}"})


@route("POST", "/v1/models")
def create_model() -> Response:
    request = _json_body()
    _refuse_unknown_fields(request, CREATE_MODEL_FIELDS)
    name = _model_name(request.get("name"))
    task = request.get("task")
    if task not in TASKS:
        raise BadRequest(f"task must be one of {', '.join(TASKS)}, got {task!r}", code="invalid_task")
    retrain_on_new_data = request.get("retrain_on_new_data", False)
    if not isinstance(retrain_on_new_data, bool):
        raise BadRequest(
            f"retrain_on_new_data must be true or false, got {retrain_on_new_data!r}", code="invalid_retrain_on_new_data"
        )
    policy = model_policy.parse_retraining(
        request.get("retraining", {}), {**model_policy.RETRAINING_DEFAULTS, "auto": retrain_on_new_data})
    if "retraining" in request and "retrain_on_new_data" in request and policy["auto"] != retrain_on_new_data:
        raise BadRequest("retrain_on_new_data and retraining.auto disagree; give one of them",
                         code="invalid_retraining")
    gate = model_policy.parse_promotion(request.get("promotion", {}))
    spec = training_spec.resolve(
        task,
        datasets=request.get("datasets"),
        template=request.get("template"),
        params=request.get("params"),
        read_dataset=dataset_store.get_dataset,
    )

    model, version = model_registry.create_model(
        name=name, task=task, datasets=spec.datasets, template=spec.template, params=spec.params,
        retrain_on_new_data=policy["auto"], dataset_digests=spec.dataset_digests,
        retraining=policy, promotion=gate, dataset_images=spec.dataset_images,
    )
    logger.info("model created", extra={"model_id": model["model_id"], "template": spec.template})
    workflow.start_training(model["model_id"], version["version"])
    return json_response(
        202,
        {"model_id": model["model_id"], "version": version["version"], "status": model["status"]},
        headers={"Location": f"/v1/models/{model['model_id']}"},
    )


@route("GET", "/v1/models")
def list_models() -> dict:
    return {"models": model_registry.list_models()}


@route("GET", "/v1/models/<model_id>")
def get_model(model_id: str) -> dict:
    """The model; ``status`` reads ``retraining`` while a new version trains and an older one serves (Watson's
    statuses), and ``queued_version`` says a version will follow the one training."""
    model = model_registry.get_model(model_id)
    latest = model.get("latest_version")
    if (model["status"] == ModelStatus.READY and model.get("serving_version") and latest != model["serving_version"]
            and model_registry.latest_version_status(model_id) == VersionStatus.TRAINING):
        model["status"] = RETRAINING
    model["queued_version"] = model_registry.pending_version(model_id)
    debounce = model_registry.retraining_state(model_id).get("retrain_debounce")
    # New data waiting out the retraining policy's debounce or cooldown: when a version will start from it.
    model["retraining_scheduled"] = {"dataset": debounce["dataset"], "due_at": debounce["due_at"]} if debounce else None
    return model


@route("PATCH", "/v1/models/<model_id>")
def update_model(model_id: str) -> dict:
    """Change the retraining policy and/or the promotion gate; fields left out keep their value."""
    request = _json_body()
    _refuse_unknown_fields(request, UPDATE_MODEL_FIELDS)
    if not request:
        raise BadRequest(f"nothing to change: give {' and/or '.join(UPDATE_MODEL_FIELDS)}", code="invalid_json")
    model = model_registry.get_model(model_id)
    policy = model_policy.parse_retraining(request["retraining"], model["retraining"]) \
        if "retraining" in request else None
    gate = model_policy.parse_promotion(request["promotion"], model["promotion"]) if "promotion" in request else None
    model_registry.set_policies(model_id, retraining=policy, promotion=gate)
    logger.info("model policies changed", extra={"model_id": model_id, "fields": sorted(request)})
    return get_model(model_id)


@route("POST", "/v1/models/<model_id>/versions")
def create_version(model_id: str) -> Response:
    """Train a new version; the body (optional) overrides the model's current datasets, template and params."""
    request = _json_body(optional=True)
    _refuse_unknown_fields(request, CREATE_VERSION_FIELDS)
    model = model_registry.get_model(model_id)
    template = request.get("template")
    params = request.get("params")
    if template is None or template == model["template"]:
        # Same template: the given params change the model's current ones, the rest carry over.
        if params is not None and not isinstance(params, dict):
            raise BadRequest("params must be an object", code="invalid_params")
        params = {**(model.get("params") or {}), **(params or {})}
    spec = training_spec.resolve(
        model["task"],
        datasets=model["datasets"] if request.get("datasets") is None else request["datasets"],
        template=template if template is not None else model["template"],
        params=params,
        read_dataset=dataset_store.get_dataset,
    )
    version = retraining.request_version(model_id, spec, trigger={"type": model_registry.TRIGGER_API})
    if version.get("status") == retraining.QUEUED:  # one more version follows the one training now
        return json_response(202, version, headers={"Location": f"/v1/models/{model_id}"})
    return json_response(
        202,
        {"model_id": model_id, "version": version["version"], "status": version["status"]},
        headers={"Location": f"/v1/models/{model_id}/versions/{version['version']}"},
    )


@route("GET", "/v1/models/<model_id>/versions")
def list_versions(model_id: str) -> dict:
    query = app.current_event.query_string_parameters or {}
    limit = _positive_int(query.get("limit"), "limit", default=model_registry.MAX_VERSIONS_PER_PAGE,
                          maximum=model_registry.MAX_VERSIONS_PER_PAGE)
    before = _positive_int(query.get("before"), "before", default=None)
    versions, next_before = model_registry.list_versions(model_id, limit=limit, before=before)
    return {"versions": versions, "next_before": next_before}


@route("GET", "/v1/models/<model_id>/versions/<version>")
def get_version(model_id: str, version: str) -> dict:
    """The version; while it trains, with the job's ``progress`` (epochs, loss, metric, speed, ETA, history)."""
    number = _version_number(version)
    answer = model_registry.get_version(model_id, number)
    if answer["status"] == VersionStatus.TRAINING:
        answer["progress"] = workflow.training_progress(model_id, number)
    return answer


@route("GET", "/v1/models/<model_id>/versions/<version>/artifacts")
def get_version_artifacts(model_id: str, version: str) -> dict:
    """The version's files (model.onnx, labels.json, metrics.json, card.json, ...) with presigned download links."""
    return artifacts.version_artifacts(model_id, _version_number(version))


@route("POST", "/v1/models/<model_id>/versions/<version>/evaluations")
def create_evaluation(model_id: str, version: str) -> Response:
    """Measure this trained version on a registered dataset ({"dataset": name}), as a CPU Batch job."""
    number = _version_number(version)
    evaluation = evaluations.start_evaluation(model_id, number, _json_body())
    return json_response(202, evaluation, headers={"Location": f"/v1/evaluations/{evaluation['evaluation_id']}"})


# Before /v1/evaluations/<evaluation_id>, so that "compare" is never taken for an id.
@route("GET", "/v1/evaluations/compare")
def compare_evaluations() -> dict:
    query = app.current_event.query_string_parameters or {}
    return evaluations.compare(evaluations.parse_ids(query.get("ids")))


@route("GET", "/v1/evaluations/<evaluation_id>")
def get_evaluation(evaluation_id: str) -> dict:
    return evaluations.get_evaluation(evaluation_id)


@route("POST", "/v1/models/<model_id>/batch-predictions")
def create_batch_prediction(model_id: str) -> Response:
    """Predict every object (images, video frames) under an S3 prefix of the data bucket, as a workflow."""
    job = batch_predictions.start_batch_prediction(model_id, _json_body())
    return json_response(202, job, headers={"Location": f"/v1/batch-predictions/{job['batch_prediction_id']}"})


@route("GET", "/v1/batch-predictions/<batch_prediction_id>")
def get_batch_prediction(batch_prediction_id: str) -> dict:
    return batch_predictions.get_batch_prediction(batch_prediction_id)


@route("POST", "/v1/models/<model_id>/versions/<version>/cancel")
def cancel_version(model_id: str, version: str) -> dict:
    return workflow.cancel_training(model_id, _version_number(version))


@route("POST", "/v1/models/<model_id>/versions/<version>/promote")
def promote_version(model_id: str, version: str) -> dict:
    """Serve this trained version (a rollback, when it is an older one)."""
    return version_lifecycle.promote_version(model_id, _version_number(version))


@route("DELETE", "/v1/models/<model_id>/versions/<version>")
def delete_version(model_id: str, version: str) -> dict:
    return version_lifecycle.delete_version(model_id, _version_number(version))


@route("DELETE", "/v1/models/<model_id>")
def delete_model(model_id: str) -> dict:
    return version_lifecycle.delete_model(model_id)


@route("POST", "/v1/keys")
def create_key() -> Response:
    """A scoped API key ({"name", "scopes"}): the answer's ``key`` is shown this once."""
    request = _json_body()
    _refuse_unknown_fields(request, ("name", "scopes"))
    context = app.current_event.request_context
    created = api_keys.create_key(request.get("name"), request.get("scopes"), api_id=context.api_id,
                                  stage=context.stage)
    logger.info("API key created", extra={"key_id": created["key_id"], "scopes": created["scopes"]})
    return json_response(201, created, headers={"Location": f"/v1/keys/{created['key_id']}"})


@route("GET", "/v1/keys")
def list_keys() -> dict:
    return {"keys": api_keys.list_keys()}


@route("DELETE", "/v1/keys/<key_id>")
def revoke_key(key_id: str) -> dict:
    """Revoked at once in the table; API Gateway may answer from its authorizer cache until its TTL ends."""
    revoked = api_keys.revoke_key(key_id)
    logger.info("API key revoked", extra={"key_id": key_id})
    return revoked


# ---------------------------------------------------------------- request checks


def _json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object; ``{}`` for an empty body when ``optional``."""
    try:
        raw = app.current_event.decoded_body
    except ValueError:  # base64 that is not text
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
    if raw is None or not raw.strip():
        if optional:
            return {}
        raise BadRequest("request body is required: a JSON object", code="invalid_json")
    body = json_document(raw)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    return body


def _model_name(name: Any) -> str:
    if not isinstance(name, str):
        raise BadRequest(f"name must be a string of 1 to {MAX_MODEL_NAME_CHARS} characters", code="invalid_name")
    name = name.strip()
    if not 1 <= len(name) <= MAX_MODEL_NAME_CHARS:
        raise BadRequest(
            f"name must be 1 to {MAX_MODEL_NAME_CHARS} characters, got {len(name)}", code="invalid_name"
        )
    if any(not character.isprintable() for character in name):
        raise BadRequest("name must not contain control characters", code="invalid_name")
    return name


def _refuse_unknown_fields(request: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(allowed)})", code="unknown_field")


def _positive_int(raw: str | None, name: str, *, default: int | None, maximum: int | None = None) -> int | None:
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        limit = f" of at most {maximum}" if maximum is not None else ""
        raise BadRequest(f"{name} must be a positive integer{limit}, got {raw!r}", code=f"invalid_{name}")
    return int(raw)


def _version_number(raw: str) -> int:
    # Digits only: "1.0", "+1" and "1e3" are not version numbers. Nine digits keeps it well inside the table.
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1:
        raise BadRequest(f"version must be a positive integer, got {raw!r}", code="invalid_version")
    return int(raw)
