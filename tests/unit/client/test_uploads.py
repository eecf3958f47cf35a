"""upload_dataset: batches within the route's limits, PUTs with exactly the named headers, multipart with
ETags and completion, abort when a part fails."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fake_api import Reply, error
from sightline_client import UploadFailed, ValidationError, WaitTimeout
from sightline_client.uploads import MAX_URLS_PER_ANSWER, MIN_PART_BYTES, LocalFile, batches, collect

PART = 10  # the fake answers multipart uploads in parts of 10 bytes


def uploads_answer(fake, multipart_over: int | None = None, extra_headers: dict | None = None):
    """The fake's POST .../uploads: a PUT URL per file (into the fake's /s3/), or parts above ``multipart_over``."""
    def answer(request):
        name = request.path.split("/")[3]
        uploads = []
        for file in request.json()["files"]:
            url = f"{fake.url}/s3/{name}/{file['path']}"
            if multipart_over is not None and file["size"] > multipart_over:
                sizes = [min(PART, file["size"] - start) for start in range(0, file["size"], PART)]
                uploads.append({"path": file["path"], "key": f"datasets/{name}/{file['path']}", "size": file["size"],
                                "type": "multipart", "upload_id": "up-1", "part_size": PART,
                                "headers": {"Content-Type": "application/zip"},
                                "parts": [{"part_number": n + 1, "size": size, "method": "PUT",
                                           "url": f"{url}?partNumber={n + 1}",
                                           "headers": {"Content-Length": str(size), **(extra_headers or {})}}
                                          for n, size in enumerate(sizes)]})
            else:
                uploads.append({"path": file["path"], "key": f"datasets/{name}/{file['path']}", "size": file["size"],
                                "type": "single", "method": "PUT", "url": url,
                                "headers": {"Content-Type": "image/png", "Content-Length": str(file["size"]),
                                            **(extra_headers or {})}})
        return {"dataset": name, "bucket": "data", "expires_in": 3600, "expires_at": "2999-01-01T00:00:00Z",
                "complete": f"/v1/datasets/{name}/uploads/complete", "uploads": uploads}
    return answer


def s3_put(request):
    return Reply(200, b"", {"ETag": '"' + hashlib.md5(request.body).hexdigest() + '"'})


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_folder_uploads_each_file_with_exactly_the_headers_named_and_no_api_key(fake, client, tmp_path):
    folder = write_files(tmp_path / "pets", {"cat/1.png": b"cat one", "dog/1.png": b"dog", ".DS_Store": b"x",
                                             "cat/.hidden.png": b"x", "empty.png": b"", "__MACOSX/cat/1.png": b"x"})
    fake.on("POST", "/v1/datasets/pets/uploads", uploads_answer(fake, extra_headers={"x-amz-meta-test": "yes"}))
    fake.on("PUT", "/s3/.*", s3_put)
    progress = []
    result = client.upload_dataset("pets", folder, wait=False, on_progress=progress.append, workers=2)
    assert result.files == ["cat/1.png", "dog/1.png"] and result.bytes == 10
    assert sorted(result.skipped) == [(".DS_Store", "hidden or system file"), ("__MACOSX/", "hidden or system folder"),
                                      ("cat/.hidden.png", "hidden or system file"), ("empty.png", "empty")]
    [asked] = fake.sent("POST", "/v1/datasets/pets/uploads")
    assert asked.json() == {"files": [{"path": "cat/1.png", "size": 7}, {"path": "dog/1.png", "size": 3}]}
    puts = {r.path: r for r in fake.sent("PUT")}
    assert puts["/s3/pets/cat/1.png"].body == b"cat one"
    for put in puts.values():
        assert put.headers["Content-Type"] == "image/png" and put.headers["x-amz-meta-test"] == "yes"
        assert put.headers["Content-Length"] == str(len(put.body)) and "x-api-key" not in put.headers
    assert progress[-1].bytes_done == 10 and progress[-1].files_done == 2 and progress[-1].files_total == 2


def test_a_big_file_goes_in_parts_then_completes_with_the_etags_in_order(fake, client, tmp_path):
    data = bytes(range(256)) * 2 + b"tail"  # 516 bytes: 52 parts of at most 10
    archive = write_files(tmp_path, {"all.zip": data}) / "all.zip"
    fake.on("POST", "/v1/datasets/big/uploads", uploads_answer(fake, multipart_over=100))
    fake.on("PUT", "/s3/.*", s3_put)
    fake.on("POST", "/v1/datasets/big/uploads/complete", {"dataset": "big", "path": "all.zip", "key": "k", "etag": "e"})
    result = client.upload_dataset("big", archive, wait=False)
    assert result.files == ["all.zip"]
    parts = sorted(fake.sent("PUT"), key=lambda r: int(r.query["partNumber"]))
    assert len(parts) == 52 and b"".join(p.body for p in parts) == data
    [complete] = fake.sent("POST", "/v1/datasets/big/uploads/complete")
    body = complete.json()
    assert body["path"] == "all.zip" and body["upload_id"] == "up-1"
    assert body["parts"] == [{"part_number": n + 1, "etag": hashlib.md5(p.body).hexdigest()} for n, p in enumerate(parts)]
    assert not fake.sent("POST", "/v1/datasets/big/uploads/abort")


def test_a_part_the_storage_refuses_aborts_the_upload_and_never_completes_it(fake, client, tmp_path):
    archive = write_files(tmp_path, {"all.zip": b"z" * 35}) / "all.zip"
    fake.on("POST", "/v1/datasets/big/uploads", uploads_answer(fake, multipart_over=20))
    fake.on("PUT", "/s3/.*", lambda r: s3_put(r) if r.query["partNumber"] != "3" else Reply(
        403, b"<Error><Code>SignatureDoesNotMatch</Code><Message>The signature does not match</Message></Error>",
        {"Content-Type": "application/xml"}))
    fake.on("POST", "/v1/datasets/big/uploads/abort", {"aborted": True})
    with pytest.raises(UploadFailed) as raised:
        client.upload_dataset("big", archive, wait=False)
    assert "part 3 of all.zip" in raised.value.message and "SignatureDoesNotMatch" in raised.value.message
    [abort] = fake.sent("POST", "/v1/datasets/big/uploads/abort")
    assert abort.json() == {"path": "all.zip", "upload_id": "up-1"}
    assert not fake.sent("POST", "/v1/datasets/big/uploads/complete")


def test_the_api_refusing_a_file_is_its_validation_error(fake, client, tmp_path):
    folder = write_files(tmp_path / "d", {"notes.docx": b"word"})
    fake.on("POST", "/v1/datasets/d/uploads", error(400, "unsupported_file_type", "files[0].path 'notes.docx': not a "
                                                    "supported file"))
    with pytest.raises(ValidationError) as raised:
        client.upload_dataset("d", folder, wait=False)
    assert raised.value.code == "unsupported_file_type" and not fake.sent("PUT")


def test_uploads_are_asked_for_in_batches_of_at_most_1000_files(fake, client, tmp_path):
    folder = write_files(tmp_path / "many", {f"c/{n:04d}.png": b"p" for n in range(1203)})
    fake.on("POST", "/v1/datasets/many/uploads", uploads_answer(fake))
    fake.on("PUT", "/s3/.*", s3_put)
    client.upload_dataset("many", folder, wait=False, workers=8)
    assert [len(r.json()["files"]) for r in fake.sent("POST")] == [1000, 203]
    assert len(fake.sent("PUT")) == 1203


def test_batches_keep_within_2000_urls_counting_a_big_file_s_parts():
    big = LocalFile("big.zip", Path("big.zip"), 1500 * MIN_PART_BYTES)  # 1500 parts
    small = [LocalFile(f"{n}.png", Path(f"{n}.png"), 10) for n in range(600)]
    sizes = [(len(batch), sum(1 if f.size < MIN_PART_BYTES else 1500 for f in batch))
             for batch in batches([*small, big, *small])]
    assert all(urls <= MAX_URLS_PER_ANSWER for _, urls in sizes)
    assert sizes == [(600, 600), (501, 2000), (100, 100)]  # the big file starts a new request


def test_what_cannot_be_uploaded_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationError, match="no such file or folder"):
        collect(tmp_path / "missing")
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(ValidationError, match="is empty"):
        collect(tmp_path / "empty.zip")
    (tmp_path / "only-hidden").mkdir()
    (tmp_path / "only-hidden" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(ValidationError, match="no files to upload"):
        collect(tmp_path / "only-hidden")
    (tmp_path / "one.json").write_text("{}")
    files, skipped = collect(tmp_path / "one.json")
    assert [(f.path, f.size) for f in files] == [("one.json", 2)] and skipped == []


def test_upload_then_wait_asks_about_exactly_its_uploads_until_the_summary_has_them(fake, client, tmp_path, sleeps):
    folder = write_files(tmp_path / "pets", {"cat/1.png": b"cat", "dog/1.png": b"dog"})
    cat, dog = hashlib.md5(b"cat").hexdigest(), hashlib.md5(b"dog").hexdigest()
    fake.on("POST", "/v1/datasets/pets/uploads/status", [
        {"files": [{"path": "cat/1.png", "state": "pending"}, {"path": "dog/1.png", "state": "pending"}],
         "summarized": False},
        {"files": [{"path": "cat/1.png", "state": "registered", "etag": cat},
                   {"path": "dog/1.png", "state": "invalid", "etag": dog, "issue_count": 1}],
         "summarized": False, "status": "ready"},
        {"files": [{"path": "cat/1.png", "state": "registered", "etag": cat},
                   {"path": "dog/1.png", "state": "invalid", "etag": dog, "issue_count": 1}],
         "summarized": True, "status": "ready"}])
    fake.on("GET", "/v1/datasets/pets", {"name": "pets", "status": "ready", "images": 1, "updated_at": "t1"})
    fake.on("POST", "/v1/datasets/pets/uploads", uploads_answer(fake))
    fake.on("PUT", "/s3/.*", s3_put)
    polls = []
    result = client.upload_dataset("pets", folder, on_poll=polls.append, workers=1)
    assert result.dataset_state == {"name": "pets", "status": "ready", "images": 1, "updated_at": "t1"}
    assert [file["state"] for file in result.file_states] == ["registered", "invalid"]
    asked = fake.sent("POST", "/v1/datasets/pets/uploads/status")
    assert len(asked) == 3 and asked[0].json() == {"files": [{"path": "cat/1.png", "etag": cat},
                                                             {"path": "dog/1.png", "etag": dog}]}
    assert [(p.files_read, p.invalid, p.summarized) for p in polls] == [(0, 0, False), (2, 1, False), (2, 1, True)]


def test_waiting_for_uploads_gives_up_saying_how_many_were_not_read(fake, client, sleeps):
    fake.on("POST", "/v1/datasets/pets/uploads/status",
            {"files": [{"path": "a.png", "state": "pending"}, {"path": "b.png", "state": "registered"}],
             "summarized": False})
    with pytest.raises(WaitTimeout, match="1 of 2 uploads of dataset pets were not registered within 5 s"):
        client.wait_for_uploads("pets", {"a.png": "e1", "b.png": "e2"}, timeout=5)
    fake.on("POST", "/v1/datasets/pets/uploads/status",
            {"files": [{"path": "a.png", "state": "registered"}], "summarized": False})
    with pytest.raises(WaitTimeout, match="its summary did not include them"):
        client.wait_for_uploads("pets", {"a.png": "e1"}, timeout=5)


def test_waiting_for_many_uploads_asks_at_most_1000_files_a_request(fake, client):
    files = {f"{n}.png": f"e{n}" for n in range(2500)}

    def answer(request):
        asked = request.json()["files"]
        return {"files": [{"path": f["path"], "state": "registered"} for f in asked], "summarized": True}

    fake.on("POST", "/v1/datasets/pets/uploads/status", answer)
    fake.on("GET", "/v1/datasets/pets", {"name": "pets", "status": "ready"})
    dataset, states = client.wait_for_uploads("pets", files)
    assert len(states) == 2500 and dataset["status"] == "ready"
    assert [len(r.json()["files"]) for r in fake.sent("POST", "/v1/datasets/pets/uploads/status")] == [1000, 1000, 500]
