"""The read routes of the REST API and its error answers (POST /v1/models is in test_api_create_model.py)."""
from __future__ import annotations

import pytest

from sightline import model_registry, templates
from api_helpers import parsed, request
from support import LambdaContext, intercept_aws, load_event, load_function


def create_model(name: str = "pets model") -> tuple[dict, dict]:
    return model_registry.create_model(
        name=name, task="classification", datasets=["pets"], template="mobilenet_v3_small",
        params=templates.TEMPLATES["mobilenet_v3_small"].defaults(),
    )


def assert_json(answer) -> None:
    assert answer.headers["content-type"].startswith("application/json")


def test_health_is_no_function_route():
    # API Gateway answers it (a MOCK integration): the function never sees unauthenticated traffic.
    answer = request("apigw_get_health.json")
    assert answer.status == 404 and answer.json["error"]["code"] == "not_found"


def test_templates_describe_every_template_and_the_defaults():
    answer = request("apigw_get_templates.json")
    assert answer.status == 200
    by_id = {t["id"]: t for t in answer.json["templates"]}
    assert set(by_id) == set(templates.TEMPLATES)
    small = by_id["mobilenet_v3_small"]
    assert small["task"] == "classification" and small["default_for_task"] is True
    assert small["params"]["epochs"] == {
        "type": "integer", "default": None, "minimum": 1, "maximum": 500,
        "description": "passes over the training split; null: chosen from its size, 15 for 1,000 training images or "
                       "more, 15 x 1,000 / images for fewer (at most 100)",
    }
    assert small["params"]["learning_rate"]["type"] == "number"
    assert by_id["ssdlite320_mobilenet_v3_large"]["task"] == "detection"
    multilabel = by_id["mobilenet_v3_small_multilabel"]
    assert multilabel["task"] == "multilabel" and multilabel["default_for_task"] is True


def test_datasets_are_listed(api_env):
    api_env.datasets.classification("pets")
    api_env.datasets.invalid("shapes")
    answer = request("apigw_get_datasets.json")
    assert answer.status == 200
    assert [d["name"] for d in answer.json["datasets"]] == ["pets", "shapes"]
    assert answer.json["datasets"][1]["status"] == "invalid"
    assert answer.json["next_after"] is None


def test_a_listing_carries_summaries_without_issue_bodies_or_classes(api_env):
    api_env.datasets.invalid("shapes")
    [summary] = request("apigw_get_datasets.json").json["datasets"]
    one = request("apigw_get_dataset.json", path="/v1/datasets/shapes").json
    assert "issues" not in summary and summary["issue_count"] == one["issue_count"] > 0
    assert summary == {key: value for key, value in one.items() if key not in ("issues", "classes", "class_counts")}


def test_datasets_are_listed_a_page_at_a_time(api_env):
    for name in ("a", "b", "c", "d", "e"):
        api_env.datasets.classification(name)
    pages, after = [], None
    while True:
        query = {"limit": "2", **({"after": after} if after else {})}
        answer = request("apigw_get_datasets.json", query=query).json
        pages.append([d["name"] for d in answer["datasets"]])
        after = answer["next_after"]
        if after is None:
            break
    assert pages == [["a", "b"], ["c", "d"], ["e"]]


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"after": "../x"}])
def test_unusable_listing_parameters_are_refused(api_env, query):
    assert request("apigw_get_datasets.json", query=query).status == 400


def test_no_datasets_is_an_empty_list(api_env):
    assert request("apigw_get_datasets.json").json == {"datasets": [], "next_after": None}


def test_one_dataset(api_env):
    api_env.datasets.classification("pets")
    answer = request("apigw_get_dataset.json")
    assert answer.status == 200
    assert answer.json["name"] == "pets" and answer.json["classes"] == {"cat": 5, "dog": 6}


def test_unknown_dataset_is_404(api_env):
    answer = request("apigw_get_dataset.json", path="/v1/datasets/nope")
    assert answer.status == 404
    assert answer.json == {"error": {"code": "dataset_not_found", "message": "dataset 'nope' does not exist"}}
    assert_json(answer)


def test_models_are_listed_newest_first(api_env):
    older, _ = create_model("first")
    newer, _ = create_model("second")
    answer = request("apigw_get_models.json")
    assert answer.status == 200
    assert [m["model_id"] for m in answer.json["models"]] == [newer["model_id"], older["model_id"]]


def test_no_models_is_an_empty_list(api_env):
    assert request("apigw_get_models.json").json == {"models": []}


def test_one_model(api_env):
    model, _ = create_model()
    answer = request("apigw_get_model.json", path=f"/v1/models/{model['model_id']}")
    assert answer.status == 200
    body = answer.json
    assert body["model_id"] == model["model_id"]
    assert body["status"] == "training" and body["serving_version"] is None and body["latest_version"] == 1
    for field in ("name", "task", "classes", "datasets", "template", "params", "created_at", "updated_at",
                  "failure_reason"):
        assert field in body
    assert body["params"]["learning_rate"] == 0.001


def test_unknown_model_is_404(api_env):
    answer = request("apigw_get_model.json", path="/v1/models/mdl-000000000000")
    assert answer.status == 404
    assert answer.json["error"]["code"] == "model_not_found"


def test_one_version(api_env):
    model, _ = create_model()
    answer = request("apigw_get_model_version.json", path=f"/v1/models/{model['model_id']}/versions/1")
    assert answer.status == 200
    body = answer.json
    assert (body["model_id"], body["version"], body["status"]) == (model["model_id"], 1, "training")
    assert body["template"] == "mobilenet_v3_small" and body["params"]["epochs"] is None  # the job chooses
    assert body["promoted"] is False and body["metrics"] is None and body["artifacts"] == {}


def test_missing_version_of_a_model_is_404(api_env):
    model, _ = create_model()
    answer = request("apigw_get_model_version.json", path=f"/v1/models/{model['model_id']}/versions/2")
    assert answer.status == 404
    assert answer.json["error"]["code"] == "version_not_found"


def test_version_of_an_unknown_model_is_404(api_env):
    answer = request("apigw_get_model_version.json", path="/v1/models/mdl-000000000000/versions/1")
    assert answer.status == 404
    assert answer.json["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("version", ["0", "abc", "1.5", "-1", "+1", "1e3", "00000000001"])
def test_version_must_be_a_positive_integer(version):
    answer = request("apigw_get_model_version.json", path=f"/v1/models/mdl-000000000000/versions/{version}")
    assert answer.status == 400
    assert answer.json == {
        "error": {"code": "invalid_version", "message": f"version must be a positive integer, got {version!r}"}
    }


def test_unknown_route_is_a_json_404():
    answer = request("apigw_get_models.json", path="/v1/nothing/here")
    assert answer.status == 404
    assert answer.json == {"error": {"code": "not_found", "message": "no route GET /v1/nothing/here"}}
    assert_json(answer)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/models", "GET, POST"),
        ("PUT", "/v1/models/mdl-0123456789ab", "DELETE, GET, PATCH"),
        ("PUT", "/v1/keys", "GET, POST"),
        ("PATCH", "/v1/models/mdl-0123456789ab/versions/1", "DELETE, GET"),
    ],
)
def test_wrong_method_is_a_json_405(method, path, allowed):
    answer = request("apigw_get_models.json", method=method, path=path)
    assert answer.status == 405
    assert answer.json["error"]["code"] == "method_not_allowed"
    assert answer.headers["allow"] == allowed


def test_unexpected_errors_are_a_generic_500_and_logged(api_env, monkeypatch, caplog):
    def broken(query, **kwargs):
        raise RuntimeError("secret internals")

    intercept_aws(monkeypatch, "table", "query", broken)
    answer = request("apigw_get_models.json")
    assert answer.status == 500
    assert answer.json["error"]["code"] == "internal_error"
    assert "secret" not in answer.json["error"]["message"]
    assert "secret internals" in caplog.text  # the log has what the caller does not


def test_the_lambda_handler_answers_proxy_events(api_env):
    api_env.datasets.classification("pets")
    handler = load_function("api").handler
    answer = parsed(handler(load_event("apigw_get_dataset.json"), LambdaContext()))
    assert answer.status == 200 and answer.json["name"] == "pets"
