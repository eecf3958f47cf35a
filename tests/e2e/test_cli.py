"""The ``sightline`` command end to end through the local stack: a class-folder dataset uploaded with the API key
alone, a model trained with ``--wait``, a prediction, the model downloaded, and scoped keys."""
from __future__ import annotations

import json
import random

import pytest

from sightline_cli.app import main
from sightline_local import synthetic
from support import png, running_stack

pytestmark = pytest.mark.e2e

KEY = "e2e-cli-key-0123456789abcdef"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("state"), KEY) as local:
        yield local


@pytest.fixture
def sightline(stack, capsys, monkeypatch, tmp_path):
    """Run ``sightline ARGS --json`` against the stack: (exit status, parsed stdout or None, stderr)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for variable in ("SIGHTLINE_API_URL", "SIGHTLINE_API_KEY"):
        monkeypatch.delenv(variable, raising=False)

    def run(*args: str, key: str = KEY) -> tuple[int, object, str]:
        status = main(["--api-url", stack.config.api_url, "--api-key", key, "--json", *args])
        captured = capsys.readouterr()
        return status, json.loads(captured.out) if captured.out.strip() else None, captured.err

    return run


def test_upload_train_predict_and_download_with_the_cli(sightline, tmp_path):
    folder = tmp_path / "shapes"
    for index, label in enumerate(("circle", "square")):
        (folder / label).mkdir(parents=True)
        for n in range(6):
            (folder / label / f"{n}.png").write_bytes(png(seed=index * 100 + n, size=32, label=label))
    (folder / ".DS_Store").write_bytes(b"finder")

    status, dataset, err = sightline("datasets", "upload", "shapes", str(folder))
    assert status == 0, err
    assert dataset["status"] == "ready" and dataset["images"] == 12, dataset
    assert dataset["classes"] == {"circle": 6, "square": 6} and "class-folders" in dataset["formats"]
    assert "left out .DS_Store: hidden or system file" in err

    status, version, err = sightline("models", "create", "shapes", "--task", "classification", "--dataset", "shapes",
                                     "--template", "mobilenet_v3_small", "--param", "epochs=1",
                                     "--param", "image_size=32", "--param", "batch_size=8", "--wait")
    assert status == 0, err
    assert version["status"] == "ready" and version["params"]["epochs"] == 1, version
    model_id = version["model_id"]

    image, _ = synthetic.shapes_image(random.Random(5), 48, 40, count=1, labels=("square",))
    picture = tmp_path / "square.png"
    picture.write_bytes(synthetic.encode(image))
    status, answer, err = sightline("predict", model_id, str(picture), "--threshold", "0")
    assert status == 0, err
    assert answer["model_id"] == model_id and answer["image"] == {"width": 48, "height": 40}
    assert {p["label"] for p in answer["predictions"]} == {"circle", "square"}

    status, downloaded, err = sightline("models", "download", model_id, str(tmp_path / "model"))
    assert status == 0, err
    names = {entry["name"] for entry in downloaded["files"]}
    assert {"model.onnx", "labels.json", "card.json", "metrics.json"} <= names and "checkpoint.pt" not in names
    assert (tmp_path / "model" / "model.onnx").stat().st_size > 100_000
    assert json.loads((tmp_path / "model" / "labels.json").read_text())["classes"] == ["circle", "square"]

    status, nothing, err = sightline("datasets", "show", "no-such-dataset")
    assert (status, nothing) == (1, None) and err.startswith("sightline: dataset_not_found: ") and err.count("\n") == 1


def test_scoped_keys_are_created_listed_and_revoked_with_the_cli(sightline):
    status, created, err = sightline("keys", "create", "--name", "camera", "--scope", "predict")
    assert status == 0 and created["scopes"] == ["predict"] and "shown this once" in err
    status, listed, _ = sightline("keys", "list")
    assert created["key_id"] in {k["key_id"] for k in listed["keys"]}
    status, refused, err = sightline("models", "list", key=created["key"])  # a predict key may not read
    assert status == 1 and err.startswith("sightline: scope_forbidden: ")
    status, revoked, _ = sightline("keys", "revoke", created["key_id"])
    assert status == 0 and revoked["revoked_at"]
