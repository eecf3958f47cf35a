"""The dataset routes beside GET: issues and images a page at a time, snapshots, and DELETE."""
from __future__ import annotations

import pytest
from api_helpers import request

from sightline import workflow


def get(path: str, query: dict[str, str] | None = None):
    return request("apigw_get_dataset.json", path=path, query=query)


def test_issues_and_images_are_paged_through_the_api(api_env):
    api_env.datasets.classification("pets")
    for n in range(3):
        api_env.datasets.register(f"datasets/pets/cat/broken-{n}.png", b"not an image")

    first = get("/v1/datasets/pets/issues", {"limit": "2"}).json
    rest = get("/v1/datasets/pets/issues", {"limit": "2", "after": first["next_after"]}).json
    assert [len(first["issues"]), len(rest["issues"]), rest["next_after"]] == [2, 1, None]

    page = get("/v1/datasets/pets/images", {"class": "dog", "limit": "4"}).json
    following = get("/v1/datasets/pets/images", {"class": "dog", "limit": "4", "cursor": page["next_cursor"]}).json
    assert len(page["images"]) == 4 and len(following["images"]) == 2 and following["next_cursor"] is None
    assert all(image["labels"] == ["dog"] and image["thumbnail_url"].startswith("http") for image in page["images"])


@pytest.mark.parametrize(("path", "query", "code"), [
    ("/v1/datasets/pets/issues", {"after": "x"}, "invalid_after"),
    ("/v1/datasets/pets/issues", {"limit": "1001"}, "invalid_limit"),
    ("/v1/datasets/pets/images", {"cursor": "../x"}, "invalid_cursor"),
    ("/v1/datasets/pets/images", {"class": " "}, "invalid_class"),
    ("/v1/datasets/pets/images", {"limit": "0"}, "invalid_limit"),
])
def test_bad_paging_parameters_are_400_naming_them(api_env, path, query, code):
    api_env.datasets.classification("pets")
    answer = get(path, query)
    assert (answer.status, answer.json["error"]["code"]) == (400, code)


@pytest.mark.parametrize("path", ["/v1/datasets/nope/issues", "/v1/datasets/nope/images", "/v1/datasets/nope/versions"])
def test_an_unknown_dataset_is_404_on_every_route(api_env, path):
    assert get(path).status == 404
    assert request("apigw_get_dataset.json", method="DELETE", path="/v1/datasets/nope").status == 404


def test_versions_lists_the_snapshots_models_trained_on(api_env):
    api_env.datasets.classification("pets")
    created = request("apigw_post_models.json", body={"name": "m", "task": "classification", "datasets": ["pets"]})
    assert created.status == 202, created.json
    workflow.prepare_training({"model_id": created.json["model_id"], "version": 1})

    [snapshot] = get("/v1/datasets/pets/versions").json["versions"]
    assert snapshot["model_versions"] == [f"{created.json['model_id']}/v1"] and snapshot["images"] == 11


def test_delete_is_accepted_then_refused_while_a_model_trains(api_env):
    api_env.datasets.classification("pets")
    api_env.datasets.classification("busy")
    assert request("apigw_post_models.json",
                   body={"name": "m", "task": "classification", "datasets": ["busy"]}).status == 202

    accepted = request("apigw_get_dataset.json", method="DELETE", path="/v1/datasets/pets")
    assert (accepted.status, accepted.json) == (202, {"name": "pets", "status": "deleting"})
    assert get("/v1/datasets/pets").json["status"] == "deleting"
    refused = request("apigw_get_dataset.json", method="DELETE", path="/v1/datasets/busy")
    assert (refused.status, refused.json["error"]["code"]) == (409, "dataset_in_use")


def test_a_class_too_small_to_train_is_refused_before_any_training_starts(api_env):
    api_env.datasets.classification("small", {"cat": 5, "dog": 2})
    answer = request("apigw_post_models.json", body={"name": "m", "task": "classification", "datasets": ["small"]})
    assert (answer.status, answer.json["error"]["code"]) == (400, "dataset_too_small")
    assert "class 'dog' has 2 image(s)" in answer.json["error"]["message"]
