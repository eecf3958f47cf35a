"""Pagination iterators follow each route's own cursor; waits poll until a final state."""
from __future__ import annotations

import pytest

from fake_api import error
from sightline_client import NotFound, SightlineError, TrainingCancelled, TrainingFailed, WaitTimeout


def test_iter_datasets_follows_next_after_until_it_is_null(fake, client):
    pages = {None: ({"name": "a"}, {"name": "b"}, "b"), "b": ({"name": "c"}, {"name": "d"}, "d"), "d": ({"name": "e"}, None, None)}

    def page(request):
        first, second, following = pages[request.query.get("after")]
        return {"datasets": [d for d in (first, second) if d], "next_after": following}

    fake.on("GET", "/v1/datasets", page)
    assert [d["name"] for d in client.iter_datasets(page_size=2)] == ["a", "b", "c", "d", "e"]
    assert [r.query for r in fake.sent()] == [{"limit": "2"}, {"limit": "2", "after": "b"}, {"limit": "2", "after": "d"}]


def test_images_follow_next_cursor_with_the_class_filter_and_versions_next_before(fake, client):
    fake.on("GET", "/v1/datasets/pets/images", lambda r: {"images": [{"sha256": r.query.get("cursor", "first")}],
                                                          "next_cursor": None if "cursor" in r.query else "c2"})
    fake.on("GET", "/v1/models/mdl-1/versions", lambda r: {
        "versions": [{"version": int(r.query.get("before", 4)) - 1}],
        "next_before": None if r.query.get("before") == "2" else int(r.query.get("before", 4)) - 1})
    assert [i["sha256"] for i in client.iter_dataset_images("pets", label="cat")] == ["first", "c2"]
    assert all(r.query["class"] == "cat" for r in fake.sent("GET", "/v1/datasets/pets/images"))
    assert [v["version"] for v in client.iter_versions("mdl-1")] == [3, 2, 1]


def test_issues_pages_and_a_cursor_that_does_not_advance_is_an_error(fake, client):
    fake.on("GET", "/v1/datasets/pets/issues", lambda r: {"issues": [{"key": "x", "reason": "bad"}], "next_after": "5"})
    with pytest.raises(SightlineError, match="same next_after twice"):
        list(client.iter_dataset_issues("pets"))
    assert len(fake.sent()) == 2


def _version(status, epoch=None, **extra):
    progress = None if epoch is None else {"epoch": epoch, "epochs": 3, "train_loss": 1.0 / epoch,
                                           "metric": {"name": "accuracy", "value": 0.3 * epoch}, "eta_seconds": 10}
    return {"model_id": "mdl-1", "version": 1, "status": status, "progress": progress, **extra}


def test_wait_for_version_reports_progress_until_ready(fake, client, sleeps):
    fake.on("GET", "/v1/models/mdl-1/versions/1", [_version("training"), _version("training", 1),
                                                   _version("training", 2), _version("ready", 3)])
    seen = []
    version = client.wait_for_version("mdl-1", 1, timeout=600, interval=5,
                                      on_progress=lambda v: seen.append((v["status"], (v["progress"] or {}).get("epoch"))))
    assert version["status"] == "ready"
    assert seen == [("training", None), ("training", 1), ("training", 2), ("ready", 3)]
    assert sleeps == [5, 5, 5]


def test_wait_for_version_raises_on_failure_cancel_and_timeout(fake, client):
    fake.on("GET", "/v1/models/mdl-1/versions/1", _version("failed", failure_reason="out of memory"))
    with pytest.raises(TrainingFailed, match="out of memory") as failed:
        client.wait_for_version("mdl-1", 1)
    assert failed.value.version["status"] == "failed"
    fake.on("GET", "/v1/models/mdl-1/versions/1", _version("cancelled"))
    with pytest.raises(TrainingCancelled):
        client.wait_for_version("mdl-1", 1)
    fake.on("GET", "/v1/models/mdl-1/versions/1", _version("training", 1))
    with pytest.raises(WaitTimeout, match="still training after 30 s") as late:
        client.wait_for_version("mdl-1", 1, timeout=30, interval=10)
    assert late.value.last["progress"]["epoch"] == 1
    fake.on("GET", "/v1/models/mdl-1/versions/1", error(404, "version_not_found", "no version 1"))
    with pytest.raises(NotFound):
        client.wait_for_version("mdl-1", 1)


def test_wait_for_dataset_waits_for_it_to_exist_change_and_stay_unchanged(fake, client, sleeps):
    fake.on("GET", "/v1/datasets/pets", [error(404, "dataset_not_found"),
                                         {"name": "pets", "status": "ready", "updated_at": "t0"},  # the old state
                                         {"name": "pets", "status": "invalid", "updated_at": "t1"},
                                         {"name": "pets", "status": "ready", "updated_at": "t2"},
                                         {"name": "pets", "status": "ready", "updated_at": "t2"}])
    dataset = client.wait_for_dataset("pets", changed_since="t0", settle=3, interval=1)
    assert dataset["updated_at"] == "t2" and sum(sleeps) >= 3
    assert len(fake.sent()) >= 6


def test_wait_for_dataset_gives_up_with_the_last_state(fake, client):
    fake.on("GET", "/v1/datasets/pets", error(404, "dataset_not_found"))
    with pytest.raises(WaitTimeout, match="not registered yet"):
        client.wait_for_dataset("pets", timeout=10)
    fake.on("GET", "/v1/datasets/pets", {"name": "pets", "status": "deleting", "updated_at": "t"})
    with pytest.raises(SightlineError, match="being deleted"):
        client.wait_for_dataset("pets")


def test_wait_for_evaluation_and_batch_prediction(fake, client):
    fake.on("GET", "/v1/evaluations/ev-1", [{"status": "queued"}, {"status": "running"},
                                             {"status": "succeeded", "metrics": {"accuracy": 0.9}}])
    assert client.wait_for_evaluation("ev-1")["metrics"] == {"accuracy": 0.9}
    fake.on("GET", "/v1/batch-predictions/bp-1", {"status": "failed", "failure_reason": "no objects"})
    with pytest.raises(SightlineError, match="no objects") as failed:
        client.wait_for_batch_prediction("bp-1")
    assert failed.value.code == "batch_prediction_failed"
