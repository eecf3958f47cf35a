"""Where the URL and key come from (and where they are saved), and the ways an image is sent to predict."""
from __future__ import annotations

import base64
import json
import stat

import pytest

from sightline_client import ConfigurationError, SightlineClient, ValidationError
from sightline_client.config import config_path, resolve, write_config_file

PNG = b"\x89PNG\r\n\x1a\n" + b"rest"
ZIP = b"PK\x03\x04" + b"rest"


def test_an_argument_beats_the_environment_beats_the_file_beats_the_local_stack(tmp_path, monkeypatch):
    (tmp_path / ".sightline").mkdir()
    (tmp_path / ".sightline" / "api-key").write_text("local-stack-key\n")
    assert resolve() == resolve(cwd=tmp_path)
    local = resolve(cwd=tmp_path)
    assert (local.api_url, local.api_key, local.key_source) == ("http://127.0.0.1:3000", "local-stack-key",
                                                                "local stack key file")
    write_config_file("https://api.example.com/prod/", "file-key")
    saved = resolve(cwd=tmp_path)
    assert (saved.api_url, saved.api_key, saved.url_source) == ("https://api.example.com/prod", "file-key", "config file")
    monkeypatch.setenv("SIGHTLINE_API_URL", "https://env.example.com")
    monkeypatch.setenv("SIGHTLINE_API_KEY", "env-key")
    assert (resolve().api_url, resolve().api_key) == ("https://env.example.com", "env-key")
    given = resolve("http://127.0.0.1:4000/v1", "arg-key")
    assert (given.api_url, given.api_key, given.key_source) == ("http://127.0.0.1:4000", "arg-key", "argument")


def test_a_key_is_only_sent_to_the_endpoint_it_belongs_to(tmp_path, monkeypatch):
    (tmp_path / ".sightline").mkdir()
    (tmp_path / ".sightline" / "api-key").write_text("local-stack-key")
    write_config_file("https://api.example.com", "file-key")
    monkeypatch.setenv("SIGHTLINE_API_URL", "https://other.example.com")
    assert resolve(cwd=tmp_path).api_key is None  # neither the file's key nor the local stack's goes there
    monkeypatch.setenv("SIGHTLINE_API_URL", "http://localhost:3000")
    assert resolve(cwd=tmp_path).api_key == "local-stack-key"


def test_the_file_is_private_and_honours_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = write_config_file("https://api.example.com", "secret-key")
    assert path == tmp_path / "xdg" / "sightline" / "config.json" == config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"api_url": "https://api.example.com", "api_key": "secret-key"}
    path.chmod(0o644)
    write_config_file("https://api.example.com", "new-key")  # rewriting narrows it again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and resolve().api_key == "new-key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".config" / "sightline" / "config.json"


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        resolve("ftp://example.com")
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        SightlineClient("localhost:3000", "k")
    config_path().parent.mkdir(parents=True)
    config_path().write_text("{not json")
    with pytest.raises(ConfigurationError, match="not JSON"):
        resolve()
    config_path().write_text('{"api_url": 3}')
    with pytest.raises(ConfigurationError, match="must be a JSON object"):
        resolve()


def test_predict_sends_the_image_as_the_body_with_options_in_the_query(fake, client, tmp_path):
    fake.on("POST", "/v1/models/mdl-1/predict", {"model_id": "mdl-1", "predictions": []})
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    client.predict("mdl-1", image, threshold=0.3, max_results=5, version=2, classes=["cat", "dog"])
    [sent] = fake.sent()
    assert sent.body == PNG and sent.headers["Content-Type"] == "image/png"
    assert sent.query == {"threshold": "0.3", "max_results": "5", "version": "2", "classes": "cat,dog"}


def test_predict_as_zip_form_json_and_s3_uri(fake, client):
    fake.on("POST", "/v1/models/mdl-1/predict", {"model_id": "mdl-1", "images": []})
    client.predict("mdl-1", ZIP)
    client.predict("mdl-1", PNG, form=True, threshold=0.5, classes=["cat"])
    client.predict("mdl-1", PNG, as_json=True, max_results=1)
    client.predict("mdl-1", s3_uri="s3://data/incoming/cat.jpg", version=3)
    raw, form, as_json, by_uri = fake.sent()
    assert raw.headers["Content-Type"] == "application/zip" and raw.body == ZIP
    assert form.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="images_file"' in form.body and PNG in form.body and b'name="classes"\r\n\r\ncat' in form.body
    assert b'name="threshold"\r\n\r\n0.5' in form.body
    assert as_json.json() == {"image": base64.b64encode(PNG).decode(), "max_results": 1}
    assert by_uri.json() == {"s3_uri": "s3://data/incoming/cat.jpg", "version": 3}


def test_predict_many_names_models_and_pinned_versions(fake, client):
    fake.on("POST", "/v1/predict", {"results": [{"model_id": "a"}, {"model_id": "b", "error": {"code": "x"}}]})
    answer = client.predict_many(["a", ("b", 3), {"model_id": "c"}], PNG, threshold=0.2)
    assert len(answer["results"]) == 2
    assert fake.sent()[0].json() == {"models": ["a", {"model_id": "b", "version": 3}, {"model_id": "c"}],
                                     "image": base64.b64encode(PNG).decode(), "threshold": 0.2}
    client.predict_many(["a", "b"], PNG, form=True)
    assert b'name="models"\r\n\r\na,b' in fake.sent()[1].body


def test_bad_predict_input_is_refused_before_any_request(fake, client, tmp_path):
    cases = [
        (lambda: client.predict("m"), "exactly one of an image and s3_uri"),
        (lambda: client.predict("m", PNG, s3_uri="s3://a/b"), "exactly one of an image and s3_uri"),
        (lambda: client.predict("m", b"plain text"), "not a JPEG, PNG"),
        (lambda: client.predict("m", tmp_path / "missing.jpg"), "no such file"),
        (lambda: client.predict("m", PNG, threshold=1.5), "threshold must be between 0 and 1"),
        (lambda: client.predict("m", PNG, max_results=0), "max_results must be 1 to 100"),
        (lambda: client.predict_many([], PNG), "1 to 10 models"),
        (lambda: client.predict_many([("a", 2)], PNG, form=True), "by id only"),
        (lambda: client.compare_evaluations([f"e{n}" for n in range(11)]), "1 to 10 evaluation ids"),
        (lambda: client.add_image("d", PNG, label="cat", boxes=[]), "exactly one of label, labels or boxes"),
    ]
    for call, message in cases:
        with pytest.raises(ValidationError, match=message):
            call()
    assert fake.sent() == []


def test_every_route_has_its_method(fake, client, tmp_path):
    """One call per route of docs/openapi.yaml: the method and path each typed method sends."""
    fake.on("GET", ".*", lambda r: {"keys": [], "templates": [], "versions": [], "models": []})
    fake.on("POST", ".*", {"uploads": [], "model_id": "mdl-1", "version": 1})
    fake.on("PATCH", ".*", {})
    fake.on("DELETE", ".*", {})
    fake.on("PUT", ".*", {})
    calls = [
        (lambda: client.create_key("cam", ["predict"]), "POST /v1/keys"),
        (client.list_keys, "GET /v1/keys"),
        (lambda: client.revoke_key("k1"), "DELETE /v1/keys/k1"),
        (client.list_templates, "GET /v1/templates"),
        (client.list_datasets, "GET /v1/datasets"),
        (lambda: client.get_dataset("d"), "GET /v1/datasets/d"),
        (lambda: client.delete_dataset("d"), "DELETE /v1/datasets/d"),
        (lambda: client.list_dataset_issues("d"), "GET /v1/datasets/d/issues"),
        (lambda: client.list_dataset_images("d"), "GET /v1/datasets/d/images"),
        (lambda: client.list_dataset_versions("d"), "GET /v1/datasets/d/versions"),
        (lambda: client.add_image("d", PNG, label="cat"), "POST /v1/datasets/d/images"),
        (lambda: client.create_uploads("d", [{"path": "a.png", "size": 1}]), "POST /v1/datasets/d/uploads"),
        (lambda: client.complete_upload("d", "a.zip", "u", [{"part_number": 1, "etag": "e"}]),
         "POST /v1/datasets/d/uploads/complete"),
        (lambda: client.abort_upload("d", "a.zip", "u"), "POST /v1/datasets/d/uploads/abort"),
        (client.list_models, "GET /v1/models"),
        (lambda: client.create_model("m", "detection", ["d"]), "POST /v1/models"),
        (lambda: client.get_model("mdl-1"), "GET /v1/models/mdl-1"),
        (lambda: client.update_model("mdl-1", promotion={"gate": "always"}), "PATCH /v1/models/mdl-1"),
        (lambda: client.delete_model("mdl-1"), "DELETE /v1/models/mdl-1"),
        (lambda: client.create_version("mdl-1", params={"epochs": 1}), "POST /v1/models/mdl-1/versions"),
        (lambda: client.list_versions("mdl-1"), "GET /v1/models/mdl-1/versions"),
        (lambda: client.get_version("mdl-1", 2), "GET /v1/models/mdl-1/versions/2"),
        (lambda: client.delete_version("mdl-1", 2), "DELETE /v1/models/mdl-1/versions/2"),
        (lambda: client.get_artifacts("mdl-1", 2), "GET /v1/models/mdl-1/versions/2/artifacts"),
        (lambda: client.promote_version("mdl-1", 2), "POST /v1/models/mdl-1/versions/2/promote"),
        (lambda: client.cancel_version("mdl-1", 2), "POST /v1/models/mdl-1/versions/2/cancel"),
        (lambda: client.create_evaluation("mdl-1", 2, "d"), "POST /v1/models/mdl-1/versions/2/evaluations"),
        (lambda: client.get_evaluation("ev-1"), "GET /v1/evaluations/ev-1"),
        (lambda: client.compare_evaluations(["a", "b"]), "GET /v1/evaluations/compare"),
        (lambda: client.create_batch_prediction("mdl-1", "s3://data/x/"), "POST /v1/models/mdl-1/batch-predictions"),
        (lambda: client.get_batch_prediction("bp-1"), "GET /v1/batch-predictions/bp-1"),
        (lambda: client.predict("mdl-1", PNG), "POST /v1/models/mdl-1/predict"),
        (lambda: client.predict_many(["mdl-1"], PNG), "POST /v1/predict"),
    ]
    for call, route in calls:
        call()
        last = fake.requests[-1]
        assert f"{last.method} {last.path}" == route
    assert fake.sent("GET", "/v1/evaluations/compare")[0].query == {"ids": "a,b"}
    assert fake.sent("POST", "/v1/models")[0].json() == {"name": "m", "task": "detection", "datasets": ["d"]}
