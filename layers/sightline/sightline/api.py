"""The REST API (docs/openapi.yaml) except predict, which is its own function.

API Gateway checks the API key; this module validates requests, talks to the registries and starts training.
Every error answer is ``{"error": {"code", "message"}}``.
"""
from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from sightline import model_registry, templates, workflow
from sightline.errors import BadRequest, Conflict, NotFound, SightlineError

logger = Logger(child=True)
app = APIGatewayRestResolver()

MAX_MODEL_NAME_CHARS = 128
MAX_DATASETS_PER_MODEL = 50
CREATE_MODEL_FIELDS = ("name", "task", "datasets", "template", "params")
DATASET_READY = "ready"

# (method, path) of every route served here, in the resolver's syntax: the 405 answer and the spec test use it.
ROUTES: list[tuple[str, str]] = []


def route(method: str, path: str) -> Callable[[Callable], Callable]:
    def register(function: Callable) -> Callable:
        ROUTES.append((method, path))
        return app.route(path, method=method)(function)

    return register


def dataset_store() -> ModuleType:
    """``sightline.datasets.store``, imported when first needed (tests replace this function)."""
    return importlib.import_module("sightline.datasets.store")


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
        logger.error("request failed", extra={"code": error.code, "error": error.message})
    return error_response(error.status, error.code, error.message)


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
    return error_response(500, "internal_error", "internal error; the request was logged")


def _path_pattern(path: str) -> re.Pattern[str]:
    # "/v1/models/<model_id>" -> "/v1/models/[^/]+" (re.escape leaves < and > alone)
    return re.compile(re.sub(r"<[^>/]+>", "[^/]+", re.escape(path)))


# ---------------------------------------------------------------- routes


@route("GET", "/v1/health")
def health() -> dict:
    return {"status": "ok"}


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
    return {"datasets": [model_registry.from_dynamo(d) for d in dataset_store().list_datasets()]}


@route("GET", "/v1/datasets/<name>")
def get_dataset(name: str) -> dict:
    dataset = dataset_store().get_dataset(name)
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist", code="dataset_not_found")
    return model_registry.from_dynamo(dataset)


@route("POST", "/v1/models")
def create_model() -> Response:
    request = _json_body()
    unknown = sorted(set(request) - set(CREATE_MODEL_FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(CREATE_MODEL_FIELDS)})", code="unknown_field"
        )
    name = _model_name(request.get("name"))
    task = request.get("task")
    if task not in templates.TASKS:
        raise BadRequest(f"task must be one of {', '.join(templates.TASKS)}, got {task!r}", code="invalid_task")
    dataset_names = _dataset_names(request.get("datasets"))
    template_id = request.get("template")
    if template_id is not None and not isinstance(template_id, str):
        raise BadRequest(f"template must be a template id string, got {template_id!r}", code="invalid_template")
    template = templates.template_for(task, template_id)
    params = template.resolve_params(request.get("params"))
    _check_datasets_trainable(dataset_names, task)

    model, version = model_registry.create_model(
        name=name, task=task, datasets=dataset_names, template=template.id, params=params
    )
    logger.info("model created", extra={"model_id": model["model_id"], "template": template.id})
    workflow.start_training(model["model_id"], version["version"])
    return json_response(
        202,
        {"model_id": model["model_id"], "version": version["version"], "status": model_registry.TRAINING},
        headers={"Location": f"/v1/models/{model['model_id']}"},
    )


@route("GET", "/v1/models")
def list_models() -> dict:
    return {"models": model_registry.list_models()}


@route("GET", "/v1/models/<model_id>")
def get_model(model_id: str) -> dict:
    return model_registry.get_model(model_id)


@route("GET", "/v1/models/<model_id>/versions/<version>")
def get_version(model_id: str, version: str) -> dict:
    return model_registry.get_version(model_id, _version_number(version))


# ---------------------------------------------------------------- request checks


def _json_body() -> dict[str, Any]:
    try:
        raw = app.current_event.decoded_body
    except ValueError:  # base64 that is not text
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
    if raw is None or not raw.strip():
        raise BadRequest("request body is required: a JSON object", code="invalid_json")
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
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


def _dataset_names(datasets: Any) -> list[str]:
    if not isinstance(datasets, list) or not datasets:
        raise BadRequest("datasets must be a non-empty list of dataset names", code="invalid_datasets")
    if len(datasets) > MAX_DATASETS_PER_MODEL:
        raise BadRequest(
            f"datasets lists {len(datasets)} datasets; at most {MAX_DATASETS_PER_MODEL} are allowed",
            code="invalid_datasets",
        )
    seen: set[str] = set()
    for name in datasets:
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"datasets must contain dataset names, got {name!r}", code="invalid_datasets")
        if name in seen:
            raise BadRequest(f"datasets lists {name!r} more than once", code="invalid_datasets")
        seen.add(name)
    return list(datasets)


def _check_datasets_trainable(names: list[str], task: str) -> None:
    store = dataset_store()
    for name in names:
        dataset = store.get_dataset(name)
        if dataset is None:
            raise BadRequest(f"dataset {name!r} does not exist", code="unknown_dataset")
        status = dataset.get("status")
        if status != DATASET_READY:
            raise Conflict(
                f"dataset {name!r} is not ready (status: {status}); retry when its registration has finished",
                code="dataset_not_ready",
            )
        dataset_tasks = dataset.get("tasks")
        if isinstance(dataset_tasks, list) and task not in dataset_tasks:
            raise BadRequest(
                f"dataset {name!r} has no {task} data (it has: {', '.join(dataset_tasks) or 'none'})",
                code="dataset_task_mismatch",
            )


def _version_number(raw: str) -> int:
    # Digits only: "1.0", "+1" and "1e3" are not version numbers. Nine digits keeps it well inside the table.
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1:
        raise BadRequest(f"version must be a positive integer, got {raw!r}", code="invalid_version")
    return int(raw)
