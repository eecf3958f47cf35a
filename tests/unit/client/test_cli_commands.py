"""The ``sightline`` command against the fake API: tables and --json, exit statuses, one-line errors, --wait,
--draw, downloads, confirmations, and ``local``/``deploy`` passed on unchanged."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from fake_api import API_KEY, Reply, Sleeps, error
from sightline_cli import state as state_module
from sightline_client import SightlineClient
from sightline_cli.app import app, main

TEMPLATES = {"templates": [
    {"id": "mobilenet_v3_small", "task": "classification", "description": "small", "default_for_task": True,
     "params": {"epochs": {"type": "integer", "default": None, "minimum": 1, "maximum": 500,
                           "description": "passes over the data"}}},
    {"id": "ssdlite320_mobilenet_v3_large", "task": "detection", "description": "light detector",
     "default_for_task": True, "params": {"quantize": {"type": "string", "default": "none", "choices": ["none"],
                                                        "description": "fp32 only"}}},
]}


class QuickClient(SightlineClient):
    """The CLI's client, with waits that take no time (a clock that moves by the waits)."""

    def __init__(self, *args, **kwargs):
        sleeps = Sleeps()
        super().__init__(*args, sleep=sleeps, **kwargs)
        self.clock = sleeps.clock


@pytest.fixture
def run(fake, monkeypatch):
    monkeypatch.setattr(state_module, "SightlineClient", QuickClient)
    monkeypatch.setenv("SIGHTLINE_API_URL", fake.url)
    monkeypatch.setenv("SIGHTLINE_API_KEY", API_KEY)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return invoke


def png(width=120, height=90) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (250, 250, 250)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_templates_as_a_table_and_as_the_api_s_json(fake, run):
    fake.on("GET", "/v1/templates", TEMPLATES)
    table = run("templates")
    assert table.exit_code == 0, table.output
    assert "mobilenet_v3_small" in table.stdout and "ssdlite320_mobilenet_v3_large" in table.stdout
    assert "epochs=null" in table.stdout
    one = run("templates", "mobilenet_v3_small")
    assert "passes over the data" in one.stdout and "1..500" in one.stdout
    as_json = run("templates", "--json", "--task", "detection")
    assert json.loads(as_json.stdout) == {"templates": [TEMPLATES["templates"][1]]}
    assert json.loads(run("--json", "templates").stdout) == TEMPLATES  # --json before the command works too
    unknown = run("templates", "resnet9000")
    assert unknown.exit_code == 2 and "no template 'resnet9000'" in unknown.output


def test_an_api_error_is_one_line_and_exit_status_1(fake, run):
    fake.on("GET", "/v1/datasets/pets", error(404, "dataset_not_found", "no dataset pets"))
    result = run("datasets", "show", "pets")
    assert result.exit_code == 1
    assert result.stderr == "sightline: dataset_not_found: no dataset pets\n" and result.stdout == ""
    fake.on("GET", "/v1/models", error(500, "internal_error", "internal error; quote reference r-1", reference="r-1"))
    failed = run("models", "list")
    assert failed.exit_code == 1 and failed.stderr.count("\n") == 1 and "Traceback" not in failed.output


def test_main_returns_the_exit_status_and_wrong_usage_is_2(fake, monkeypatch, capsys):
    monkeypatch.setenv("SIGHTLINE_API_URL", fake.url)
    monkeypatch.setenv("SIGHTLINE_API_KEY", API_KEY)
    fake.on("GET", "/v1/models/mdl-x", error(404, "model_not_found", "no model mdl-x"))
    assert main(["models", "show", "mdl-x"]) == 1
    assert capsys.readouterr().err == "sightline: model_not_found: no model mdl-x\n"
    assert main(["models", "create", "m", "--task", "segmentation", "--dataset", "d"]) == 2
    assert "'segmentation' is not one of classification" in capsys.readouterr().err
    assert main(["models", "create", "m", "--task", "detection", "--dataset", "d", "--param", "epochs"]) == 2
    assert "'epochs' is not name=value" in capsys.readouterr().err
    fake.on("GET", "/v1/models", {"models": []})
    assert main(["models", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == {"models": []}


def test_datasets_list_pages_through_and_shows_a_table(fake, run):
    fake.on("GET", "/v1/datasets", lambda r: {
        "datasets": [{"name": "boxes" if "after" in r.query else "pets", "status": "ready", "images": 12,
                      "class_count": 2, "tasks": ["classification"], "formats": ["class-folders"], "issue_count": 0}],
        "next_after": None if "after" in r.query else "pets"})
    result = run("datasets", "list")
    assert result.exit_code == 0 and "pets" in result.stdout and "boxes" in result.stdout
    assert [d["name"] for d in json.loads(run("datasets", "list", "--json").stdout)["datasets"]] == ["pets", "boxes"]


def test_datasets_upload_shows_the_registered_dataset_with_classes_and_issues(fake, run, tmp_path):
    folder = tmp_path / "pets"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "1.png").write_bytes(png())
    fake.on("POST", "/v1/datasets/pets/uploads", lambda r: {
        "dataset": "pets", "expires_in": 3600, "expires_at": "2999-01-01T00:00:00Z", "uploads": [
            {"path": f["path"], "type": "single", "url": f"{fake.url}/s3/{f['path']}",
             "headers": {"Content-Type": "image/png", "Content-Length": str(f["size"])}} for f in r.json()["files"]]})
    fake.on("PUT", "/s3/.*", Reply(200, b"", {"ETag": '"e"'}))
    dataset = {"name": "pets", "status": "ready", "images": 1, "tasks": ["classification"], "updated_at": "t1",
               "class_counts": {"cat": {"images": 1, "boxes": 0}}, "issue_count": 1,
               "issues": [{"key": "datasets/pets/cat/bad.png", "reason": "not an image"}],
               "too_small": {"classification": {"reasons": ["cat has 1 image, needs 5"], "count": 1}}}
    fake.on("GET", "/v1/datasets/pets", dataset)
    fake.on("POST", "/v1/datasets/pets/uploads/status", [
        {"files": [{"path": "cat/1.png", "state": "pending"}], "summarized": False},
        {"files": [{"path": "cat/1.png", "state": "superseded", "etag": "other"}], "summarized": True}])
    result = run("datasets", "upload", "pets", str(folder))
    assert result.exit_code == 0, result.output
    assert "ready" in result.stdout and "cat" in result.stdout and "not an image" in result.stdout
    assert "cat has 1 image, needs 5" in result.stderr
    assert "cat/1.png: replaced by another upload of the same path" in result.stderr
    assert fake.sent("POST", "/v1/datasets/pets/uploads/status")[0].json() == {"files": [{"path": "cat/1.png",
                                                                                          "etag": "e"}]}
    assert len(fake.sent("PUT")) == 1
    no_wait = run("datasets", "upload", "pets", str(folder), "--no-wait", "--json")
    assert json.loads(no_wait.stdout)["files"] == ["cat/1.png"]
    missing = run("datasets", "upload", "pets", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and missing.stderr.startswith("sightline: invalid_path: ")


def test_models_create_wait_follows_the_epochs_and_prints_the_trained_version(fake, run):
    fake.on("POST", "/v1/models", Reply(202, {"model_id": "mdl-1", "version": 1, "status": "training"}))
    training = {"model_id": "mdl-1", "version": 1, "status": "training",
                "progress": {"epoch": 1, "epochs": 2, "train_loss": 0.7, "metric": {"name": "accuracy", "value": 0.5},
                             "eta_seconds": 4}}
    ready = {"model_id": "mdl-1", "version": 1, "status": "ready", "promoted": True,
             "metrics": {"primary_metric": "accuracy", "accuracy": 0.75, "task": "classification"}}
    fake.on("GET", "/v1/models/mdl-1/versions/1", [training, ready])
    result = run("models", "create", "pets", "--task", "classification", "--dataset", "pets",
                 "--template", "mobilenet_v3_small", "--param", "epochs=2", "--param", "pretrained=false",
                 "--param", "weights_uri=s3://bucket/w.pt", "--wait")
    assert result.exit_code == 0, result.output
    assert fake.sent("POST", "/v1/models")[0].json() == {
        "name": "pets", "task": "classification", "datasets": ["pets"], "template": "mobilenet_v3_small",
        "params": {"epochs": 2, "pretrained": False, "weights_uri": "s3://bucket/w.pt"}}
    assert "accuracy 0.75" in result.stdout and "ready" in result.stdout
    assert "1/2" not in result.stderr and "2/2 loss 0.7  accuracy 0.5  ETA 0:04" in result.stderr

    fake.on("GET", "/v1/models/mdl-1/versions/1", {**training, "status": "failed", "failure_reason": "CUDA out of memory"})
    failed = run("models", "create", "pets", "--task", "classification", "--dataset", "pets", "--wait")
    assert failed.exit_code == 1 and "sightline: training_failed: mdl-1 version 1 failed: CUDA out of memory" in failed.stderr


def test_delete_asks_first_unless_yes(fake, run):
    fake.on("DELETE", "/v1/models/mdl-1", {"model_id": "mdl-1", "deleted": True})
    refused = run("models", "delete", "mdl-1", input="n\n")
    assert refused.exit_code == 1 and fake.sent("DELETE") == []
    agreed = run("models", "delete", "mdl-1", input="y\n")
    assert agreed.exit_code == 0 and len(fake.sent("DELETE")) == 1
    assert run("models", "delete", "mdl-1", "--yes").exit_code == 0 and len(fake.sent("DELETE")) == 2


def test_versions_commands(fake, run):
    fake.on("GET", "/v1/models/mdl-1/versions", {"versions": [{"version": 2, "status": "training"},
                                                              {"version": 1, "status": "ready"}], "next_before": None})
    fake.on("POST", "/v1/models/mdl-1/versions/1/promote", {"model_id": "mdl-1", "serving_version": 1})
    fake.on("POST", "/v1/models/mdl-1/versions/2/cancel", {"model_id": "mdl-1", "version": 2, "status": "cancelled"})
    assert "training" in run("versions", "list", "mdl-1").stdout
    assert run("versions", "promote", "mdl-1", "1").stdout == "mdl-1 serves version 1.\n"
    assert json.loads(run("versions", "cancel", "mdl-1", "2", "--json").stdout)["status"] == "cancelled"
    assert run("versions", "show", "mdl-1", "0").exit_code == 2


def test_predict_prints_a_table_and_draws_the_boxes_on_a_copy(fake, run, tmp_path):
    image = tmp_path / "street.png"
    image.write_bytes(png())
    answer = {"model_id": "mdl-1", "version": 3, "task": "detection", "image": {"width": 120, "height": 90},
              "predictions": [{"label": "car", "score": 0.91, "box": {"x_min": 20, "y_min": 30, "x_max": 90, "y_max": 80}}]}
    fake.on("POST", "/v1/models/mdl-1/predict", answer)
    drawn = tmp_path / "out" / "drawn.png"
    result = run("predict", "mdl-1", str(image), "--threshold", "0.4", "--draw", str(drawn))
    assert result.exit_code == 0, result.output
    assert "car" in result.stdout and "0.91" in result.stdout and "(20, 30) - (90, 80)" in result.stdout
    assert fake.sent()[0].query == {"threshold": "0.4"}
    with Image.open(drawn) as picture:
        assert picture.format == "PNG" and picture.size == (120, 90)
        pixels = picture.convert("RGB")
        assert pixels.getpixel((20, 60)) != (250, 250, 250)  # the box's left edge
        assert pixels.getpixel((55, 55)) == (250, 250, 250)  # inside it, the image as it was
    assert image.read_bytes() == png()  # the original is untouched
    assert json.loads(run("predict", "mdl-1", str(image), "--json").stdout) == answer
    two = run("predict", "mdl-1", str(image), str(image), "--draw", str(drawn))
    assert two.exit_code == 2 and "--draw takes one image" in two.output
    assert run("predict", "mdl-1", str(tmp_path / "missing.png")).exit_code == 2


def test_models_download_writes_the_artifacts(fake, run, tmp_path):
    fake.on("GET", "/v1/models/mdl-1", {"model_id": "mdl-1", "serving_version": 2, "status": "ready"})
    fake.on("GET", "/v1/models/mdl-1/versions/2/artifacts", {"artifacts": [
        {"name": name, "size": 3, "url": f"{fake.url}/files/{name}"}
        for name in ("model.onnx", "labels.json", "card.json", "plots/pr.png", "checkpoint.pt")]})
    fake.on("GET", "/files/(.*)", lambda r: Reply(200, r.path.encode(), {"Content-Type": "application/octet-stream"}))
    result = run("models", "download", "mdl-1", str(tmp_path / "model"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "model.onnx").read_bytes() == b"/files/model.onnx"
    assert (tmp_path / "model" / "plots" / "pr.png").exists() and not (tmp_path / "model" / "checkpoint.pt").exists()
    assert all("x-api-key" not in r.headers for r in fake.sent("GET", "/files/.*"))
    fake.on("GET", "/v1/models/mdl-1/versions/2/artifacts", {"artifacts": [{"name": "../evil", "url": "x"}]})
    evil = run("models", "download", "mdl-1", str(tmp_path / "model2"))
    assert evil.exit_code == 1 and "outside" in evil.stderr and not (tmp_path / "evil").exists()


def test_evaluate_and_compare(fake, run):
    fake.on("GET", "/v1/models/mdl-1", {"model_id": "mdl-1", "serving_version": 1})
    fake.on("POST", "/v1/models/mdl-1/versions/1/evaluations", Reply(202, {"evaluation_id": "ev-1", "status": "queued"}))
    fake.on("GET", "/v1/evaluations/ev-1", {"evaluation_id": "ev-1", "status": "succeeded", "metrics": {"accuracy": 0.8}})
    fake.on("GET", "/v1/evaluations/compare", {"evaluations": [{"evaluation_id": "ev-1", "model_id": "mdl-1", "version": 1, "dataset": "a"},
                                                               {"evaluation_id": "ev-2", "model_id": "mdl-1", "version": 2, "dataset": "a"}],
                                               "rows": [{"metric": "accuracy", "values": [0.8, 0.85]}]})
    evaluated = run("evaluate", "mdl-1", "pets")
    assert evaluated.exit_code == 0 and "accuracy" in evaluated.stdout and "0.8" in evaluated.stdout
    compared = run("compare", "ev-1", "ev-2")
    assert compared.exit_code == 0 and "0.85" in compared.stdout and "ev-2" in compared.stdout


def test_keys_create_list_revoke(fake, run):
    fake.on("POST", "/v1/keys", Reply(201, {"key_id": "k1", "name": "camera", "scopes": ["predict", "read"],
                                            "last4": "abcd", "key": "sl_k1_secretabcd", "created_at": "t",
                                            "revoked_at": None}))
    fake.on("GET", "/v1/keys", {"keys": [{"key_id": "k1", "name": "camera", "scopes": ["predict"], "last4": "abcd",
                                          "created_at": "t", "revoked_at": None}]})
    fake.on("DELETE", "/v1/keys/k1", {"key_id": "k1", "name": "camera", "revoked_at": "t2"})
    created = run("keys", "create", "--name", "camera", "--scope", "predict", "--scope", "read", "--json")
    assert json.loads(created.stdout)["key"] == "sl_k1_secretabcd" and "shown this once" in created.stderr
    assert fake.sent("POST", "/v1/keys")[0].json() == {"name": "camera", "scopes": ["predict", "read"]}
    assert "...abcd" in run("keys", "list").stdout and "active" in run("keys", "list").stdout
    assert run("keys", "revoke", "k1").stdout == "Revoked k1 (camera) at t2.\n"
    assert run("keys", "create", "--name", "x", "--scope", "root").exit_code == 2


def test_configure_checks_the_key_and_saves_it_privately(fake, run, tmp_path, monkeypatch):
    monkeypatch.delenv("SIGHTLINE_API_URL")
    monkeypatch.delenv("SIGHTLINE_API_KEY")
    fake.on("GET", "/v1/health", {"status": "ok"})
    fake.on("GET", "/v1/templates", error(403, "forbidden", "not a key"))
    bad = run("configure", "--api-url", fake.url, "--api-key", "wrong-key")
    assert bad.exit_code == 1 and "forbidden: not a key" in bad.stderr
    fake.on("GET", "/v1/templates", error(403, "scope_forbidden", "a predict key"))  # a valid key of another scope
    saved = run("configure", "--api-url", fake.url + "/", input=f"{API_KEY}\n")
    assert saved.exit_code == 0, saved.output
    path = tmp_path / "config" / "sightline" / "config.json"
    assert json.loads(path.read_text()) == {"api_url": fake.url, "api_key": API_KEY}
    assert path.stat().st_mode & 0o777 == 0o600
    fake.on("GET", "/v1/models", {"models": []})
    assert run("models", "list", "--json").exit_code == 0  # later commands use it
    assert fake.sent("GET", "/v1/models")[0].headers["x-api-key"] == API_KEY


def test_local_and_deploy_are_passed_on_verbatim(monkeypatch):
    import sightline_local.cli

    seen = []
    monkeypatch.setattr(sightline_local.cli, "main", lambda argv: seen.append(argv) or 3)
    assert main(["local", "up", "--no-demo", "--api-port", "3001", "--help"]) == 3
    assert main(["deploy", "--dry-run", "-x"]) == 3
    assert seen == [["local", "up", "--no-demo", "--api-port", "3001", "--help"], ["deploy", "--dry-run", "-x"]]
    result = CliRunner().invoke(app, ["local", "status"])
    assert result.exit_code == 3 and seen[-1] == ["local", "status"]
