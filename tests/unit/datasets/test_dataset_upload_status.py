"""POST /v1/datasets/{name}/uploads/status: per uploaded file, whether registration read that very upload, and
whether the dataset's summary includes every file asked about."""
from __future__ import annotations

import pytest

from sightline import aws
from sightline.config import get_settings
from sightline.datasets import fanout, summary
from sightline.datasets.registration import recompute_dataset, register_object
from sightline.datasets.upload_status import MAX_STATUS_FILES, upload_status
from sightline.errors import BadRequest
from support import png

PREFIX = "datasets/pets/"


def upload(datasets, path: str, data: bytes) -> str:
    return datasets.upload(PREFIX + path, data)


def register(datasets, path: str, etag: str) -> None:
    register_object(datasets.resources.data_bucket, PREFIX + path, etag, recompute=False)


def status(*files: tuple[str, str | None]) -> dict:
    return upload_status("pets", {"files": [{"path": path, **({"etag": etag} if etag else {})}
                                            for path, etag in files]})


def states(answer: dict) -> dict[str, str]:
    return {file["path"]: file["state"] for file in answer["files"]}


def test_uploads_are_pending_then_registered_then_summarized(datasets):
    cat, dog = upload(datasets, "cat/1.png", png(1)), upload(datasets, "dog/1.png", png(2))
    before = status(("cat/1.png", cat), ("dog/1.png", dog))
    assert states(before) == {"cat/1.png": "pending", "dog/1.png": "pending"} and not before["summarized"]

    register(datasets, "cat/1.png", cat)
    register(datasets, "dog/1.png", dog)
    registered = status(("cat/1.png", cat), ("dog/1.png", dog))
    assert states(registered) == {"cat/1.png": "registered", "dog/1.png": "registered"}
    assert not registered["summarized"]  # the summary has not read them yet

    recompute_dataset("pets")
    done = status(("cat/1.png", cat), ("dog/1.png", dog))
    assert done["summarized"] and done["status"]
    assert all(file["etag"] and file["registered_at"] and file["issue_count"] == 0 for file in done["files"])

    # A file registered after that recompute read the sources is not in the summary until the next one.
    fish = upload(datasets, "fish/1.png", png(3))
    register(datasets, "fish/1.png", fish)
    assert not status(("cat/1.png", cat), ("fish/1.png", fish))["summarized"]
    assert status(("cat/1.png", cat))["summarized"]
    recompute_dataset("pets")
    assert status(("cat/1.png", cat), ("fish/1.png", fish))["summarized"]


def test_a_file_that_is_not_an_image_is_invalid_with_its_issues(datasets):
    etag = upload(datasets, "cat/broken.png", b"not an image")
    register(datasets, "cat/broken.png", etag)
    recompute_dataset("pets")
    [file] = status(("cat/broken.png", etag))["files"]
    assert file["state"] == "invalid" and file["issue_count"] >= 1


def test_an_upload_replaced_by_another_is_superseded_and_the_newer_one_pending_until_read(datasets):
    first = upload(datasets, "cat/1.png", png(1))
    register(datasets, "cat/1.png", first)
    second = upload(datasets, "cat/1.png", png(2))
    assert states(status(("cat/1.png", first))) == {"cat/1.png": "registered"}  # it was read, before the second
    assert states(status(("cat/1.png", second))) == {"cat/1.png": "pending"}
    register(datasets, "cat/1.png", second)
    assert states(status(("cat/1.png", second))) == {"cat/1.png": "registered"}
    assert states(status(("cat/1.png", first))) == {"cat/1.png": "superseded"}
    third = upload(datasets, "cat/1.png", png(3))
    datasets.resources.s3.put_object(Bucket=datasets.resources.data_bucket, Key=PREFIX + "cat/1.png", Body=png(4))
    assert states(status(("cat/1.png", third))) == {"cat/1.png": "superseded"}  # replaced before it was read
    assert states(status(("cat/1.png", None))) == {"cat/1.png": "registered"}  # no etag: whatever is recorded


def test_a_deleted_upload_is_superseded(datasets):
    old = upload(datasets, "cat/1.png", png(1))
    register(datasets, "cat/1.png", old)
    newer = upload(datasets, "cat/1.png", png(2))
    datasets.resources.s3.delete_object(Bucket=datasets.resources.data_bucket, Key=PREFIX + "cat/1.png")
    assert states(status(("cat/1.png", newer))) == {"cat/1.png": "superseded"}


def test_a_running_or_due_recompute_means_not_summarized(datasets):
    etag = upload(datasets, "cat/1.png", png(1))
    register(datasets, "cat/1.png", etag)
    recompute_dataset("pets")
    assert status(("cat/1.png", etag))["summarized"]
    summary._mark_dirty("pets")
    assert not status(("cat/1.png", etag))["summarized"]
    summary._clear_dirty("pets")
    assert summary._acquire("pets", "another-run")
    assert not status(("cat/1.png", etag))["summarized"]
    summary._release("pets", "another-run", force=True)
    assert status(("cat/1.png", etag))["summarized"]


def test_a_zip_registering_in_chunks_shows_its_chunks(datasets):
    etag = upload(datasets, "all.zip", b"PK")  # its content does not matter here: the progress item does
    other = upload(datasets, "cat/1.png", png(1))
    register(datasets, "cat/1.png", other)  # the dataset exists
    aws.table(get_settings().table_name).put_item(Item={
        **fanout.progress_key("pets", PREFIX + "all.zip"), "key": PREFIX + "all.zip", "etag": etag, "chunks": 4,
        "done": {0, 2}})
    [file] = status(("all.zip", etag))["files"]
    assert file == {"path": "all.zip", "state": "pending", "chunks": {"done": 2, "total": 4}}


@pytest.mark.parametrize(("request_body", "code"), [
    ({}, "invalid_files"),
    ({"files": []}, "invalid_files"),
    ({"files": [{"path": "a.png"}], "more": 1}, "unknown_field"),
    ({"files": ["a.png"]}, "invalid_file"),
    ({"files": [{"path": "a.png", "size": 3}]}, "unknown_field"),
    ({"files": [{"path": "../a.png"}]}, "invalid_path"),
    ({"files": [{"path": "/a.png"}]}, "invalid_path"),
    ({"files": [{"path": "a.png", "etag": 7}]}, "invalid_etag"),
    ({"files": [{"path": "a.png"}, {"path": "a.png"}]}, "duplicate_path"),
    ({"files": [{"path": f"{n}.png"} for n in range(MAX_STATUS_FILES + 1)]}, "too_many_files"),
])
def test_a_bad_request_is_refused_with_what_is_wrong(datasets, request_body, code):
    with pytest.raises(BadRequest) as refused:
        upload_status("pets", request_body)
    assert refused.value.code == code


def test_a_name_that_cannot_be_a_datasets_is_refused(datasets):
    with pytest.raises(BadRequest) as refused:
        upload_status("Not A Name!", {"files": [{"path": "a.png"}]})
    assert refused.value.code == "invalid_dataset_name"
