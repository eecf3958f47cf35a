"""Starting weights without the network: published weights are stand-ins written under torchvision's own file
names in a temporary TORCH_HOME (conftest gives every test an empty one, downloads off), S3 is moto, and
downloads go to a fake or to a server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from torchvision.models import get_weight

from sightline.contract import JobEnvironment
from sightline.templates import TEMPLATES
from sightline_training import engine, models, weights
from sightline_training.errors import InvalidInput
from training_helpers import run

SMALL = TEMPLATES["mobilenet_v3_small"]
PARAMS = {"epochs": 1, "image_size": 64, "batch_size": 4}


def published_state(template, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict shaped like the template's published weights (1000 ImageNet or 91 COCO outputs)."""
    outputs = len(get_weight(template.weights.name).meta["categories"])
    if template.task == "detection":
        outputs -= 1  # build_model adds the background label
    torch.manual_seed(seed)
    return models.build_model(template, outputs, 64, pretrained=True).state_dict()


def publish_to_cache(template, seed: int = 1) -> dict[str, torch.Tensor]:
    state = published_state(template, seed)
    path = weights.cache_dir() / weights.file_name(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def assert_starts_from(model: torch.nn.Module, state: dict[str, torch.Tensor], template, classes: int) -> None:
    """Every tensor but the head's is ``state``'s exactly; the head is new, sized for ``classes`` outputs."""
    layout = models.architecture(template)
    own = model.state_dict()
    body = [key for key in own if not layout.is_head(key) and not key.endswith("num_batches_tracked")]
    assert body and all(torch.equal(own[key], state[key]) for key in body)
    heads = [key for key in own if layout.is_head(key)]
    # Sized for ``classes`` outputs (times the anchors, or Faster R-CNN's 4 box coordinates, per position).
    assert heads and all(own[key].shape != state[key].shape and own[key].shape[0] % classes == 0 for key in heads)


def test_the_file_name_is_torchvisions_and_the_cache_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    assert weights.file_name(SMALL) == "mobilenet_v3_small-047dcff4.pth"
    assert weights.cache_dir() == tmp_path / "home" / "hub" / "checkpoints"


@pytest.mark.parametrize("template_id", ["mobilenet_v3_small", "ssdlite320_mobilenet_v3_large",
                                         "fasterrcnn_mobilenet_v3_large_fpn"])
def test_cached_published_weights_are_the_starting_point_and_the_head_is_new(template_id):
    template = TEMPLATES[template_id]
    state = publish_to_cache(template)
    model, record = weights.starting_model(template, 3, 64, template.resolve_params({}))
    assert record == {"source": "cache", "name": template.weights.name,
                      "uri": (weights.cache_dir() / weights.file_name(template)).as_uri()}
    assert_starts_from(model, state, template, 3 if template.task != "detection" else 4)


def test_the_training_job_trains_from_exactly_the_cached_tensors(local_manifest, tmp_path, monkeypatch):
    state = publish_to_cache(SMALL)
    seen: list[dict[str, torch.Tensor]] = []
    real = engine.train_one_epoch

    def recording(model, *args, **kwargs):
        seen.append({key: value.detach().clone() for key, value in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", recording)
    assert run(local_manifest("classification"), tmp_path, "mobilenet_v3_small", PARAMS) == 0
    (first,) = seen
    assert all(torch.equal(first[key], state[key]) for key in first
               if not key.startswith("classifier.3.") and not key.endswith("num_batches_tracked"))
    assert first["classifier.3.weight"].shape == (2, 1024)  # circle and square
    metrics = json.loads((tmp_path / "job" / "out" / "metrics.json").read_text())
    assert metrics["weights"]["source"] == "cache" and metrics["weights"]["name"] == SMALL.weights.name


def test_pretrained_false_trains_from_scratch_without_looking(monkeypatch):
    publish_to_cache(SMALL)
    monkeypatch.setattr(weights, "download", lambda *args: pytest.fail("no download wanted"))
    model, record = weights.starting_model(SMALL, 2, 64, SMALL.resolve_params({"pretrained": False}))
    assert record == {"source": "none", "reason": "pretrained is false"}
    cached = torch.load(weights.cache_dir() / weights.file_name(SMALL), weights_only=True)
    assert not torch.equal(model.state_dict()["features.0.0.weight"], cached["features.0.0.weight"])


def test_with_nothing_reachable_and_downloads_off_it_starts_from_scratch_at_once(monkeypatch, caplog):
    monkeypatch.setattr(weights, "download", lambda *args: pytest.fail("downloads are off"))
    started = time.monotonic()
    _, record = weights.starting_model(SMALL, 2, 64, SMALL.resolve_params({}))
    assert time.monotonic() - started < 1.0
    assert record == {"source": "none", "name": SMALL.weights.name,
                      "reason": f"not in the torch cache {weights.cache_dir()}; downloads are off "
                                f"(SIGHTLINE_ALLOW_WEIGHT_DOWNLOAD=1 allows them)"}
    assert "training mobilenet_v3_small from scratch" in caplog.text and record["reason"] in caplog.text


def test_finding_nothing_with_downloads_off_takes_under_a_second():
    started = time.monotonic()
    for template in TEMPLATES.values():
        assert weights.find_weights(template, template.resolve_params({})).record["source"] == "none"
    assert time.monotonic() - started < 1.0


def test_an_allowed_download_fills_the_cache(monkeypatch):
    state = published_state(SMALL)
    calls = []

    def fake_download(url: str, path: Path) -> None:
        calls.append((url, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)

    monkeypatch.setenv(weights.ALLOW_DOWNLOAD, "1")
    monkeypatch.setattr(weights, "download", fake_download)
    model, record = weights.starting_model(SMALL, 2, 64, {"pretrained": True})
    url = get_weight(SMALL.weights.name).url
    assert calls == [(url, weights.cache_dir() / "mobilenet_v3_small-047dcff4.pth")]
    assert record == {"source": "download", "name": SMALL.weights.name, "uri": url}
    assert_starts_from(model, state, SMALL, 2)
    # The next job finds it cached.
    assert weights.find_weights(SMALL, {"pretrained": True}).record["source"] == "cache"


def test_a_failed_download_falls_back_with_its_reason(monkeypatch):
    def offline(url: str, path: Path) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv(weights.ALLOW_DOWNLOAD, "1")
    monkeypatch.setattr(weights, "download", offline)
    _, record = weights.starting_model(SMALL, 2, 64, {"pretrained": True})
    assert record["source"] == "none"
    url = "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth"
    assert f"download from {url}: [Errno -3] Temporary failure in name resolution (gave up after" in record["reason"]


def test_a_corrupt_cache_file_is_skipped_and_said(monkeypatch):
    path = weights.cache_dir() / weights.file_name(SMALL)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>not found</html>")
    _, record = weights.starting_model(SMALL, 2, 64, {"pretrained": True})
    assert record["source"] == "none" and "not a PyTorch weights file" in record["reason"]
    # A state dict of another architecture in the cache: also from scratch, said so.
    torch.save(published_state(TEMPLATES["mobilenet_v3_large"]), path)
    _, record = weights.starting_model(SMALL, 2, 64, {"pretrained": True})
    assert record["source"] == "none" and f"{path}: 50 tensors missing" in record["reason"]


# ---------------------------------------------------------------- S3 (moto)


def put(aws_resources, key: str, state) -> str:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    aws_resources.s3.put_object(Bucket=aws_resources.artifact_bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{aws_resources.artifact_bucket}/{key}"


def test_a_users_weights_uri_in_s3_is_the_starting_point(aws_resources):
    publish_to_cache(SMALL, seed=1)  # present, but the user's own weights win
    mine = published_state(SMALL, seed=7)
    uri = put(aws_resources, "weights/mine.pth", mine)
    model, record = weights.starting_model(SMALL, 2, 64, SMALL.resolve_params({"weights_uri": uri}))
    assert record == {"source": "s3", "uri": uri}
    assert_starts_from(model, mine, SMALL, 2)


def test_a_sightline_checkpoint_is_accepted_as_weights_uri(aws_resources):
    template = TEMPLATES["fasterrcnn_mobilenet_v3_large_fpn"]
    earlier = models.build_model(template, 5, 64, pretrained=True)  # another model of the user's, 5 classes
    uri = put(aws_resources, "checkpoints/m-0/v000003/checkpoint.pt",
              {"args": {"template": template.id}, "model": earlier.state_dict(), "epoch": 3})
    model, record = weights.starting_model(template, 2, 64, {"pretrained": True, "weights_uri": uri})
    assert record["source"] == "s3"
    assert_starts_from(model, earlier.state_dict(), template, 3)


def test_the_deployments_weights_prefix_comes_before_the_cache(aws_resources):
    publish_to_cache(SMALL, seed=1)
    deployment = published_state(SMALL, seed=3)
    put(aws_resources, f"published/{weights.file_name(SMALL)}", deployment)
    prefix = f"s3://{aws_resources.artifact_bucket}/published/"
    model, record = weights.starting_model(SMALL, 2, 64, {"pretrained": True}, deployment_uri=prefix)
    assert record == {"source": "s3", "name": SMALL.weights.name,
                      "uri": f"{prefix}{weights.file_name(SMALL)}"}
    assert_starts_from(model, deployment, SMALL, 2)
    # A prefix whose file is of another architecture, or without the file: the cache, and no error.
    put(aws_resources, f"published/{weights.file_name(TEMPLATES['mobilenet_v3_large'])}", published_state(SMALL))
    other = TEMPLATES["mobilenet_v3_large"]
    cached = publish_to_cache(other)
    model, record = weights.starting_model(other, 2, 64, {"pretrained": True}, deployment_uri=prefix)
    assert record["source"] == "cache"
    assert_starts_from(model, cached, other, 2)


def test_a_missing_or_foreign_weights_uri_fails_the_job_naming_it(aws_resources):
    missing = f"s3://{aws_resources.artifact_bucket}/weights/none.pth"
    with pytest.raises(InvalidInput, match=f"params.weights_uri {missing}: no such object"):
        weights.starting_model(SMALL, 2, 64, {"weights_uri": missing})
    foreign = put(aws_resources, "weights/large.pth", published_state(TEMPLATES["mobilenet_v3_large"]))
    with pytest.raises(InvalidInput, match="tensors missing"):
        weights.starting_model(SMALL, 2, 64, {"weights_uri": foreign})


def test_the_job_reads_the_deployment_prefix_from_the_environment(aws_resources, local_manifest, tmp_path,
                                                                   monkeypatch):
    deployment = published_state(SMALL, seed=5)
    put(aws_resources, f"published/{weights.file_name(SMALL)}", deployment)
    monkeypatch.setenv(JobEnvironment.WEIGHTS_URI, f"s3://{aws_resources.artifact_bucket}/published")
    assert run(local_manifest("classification"), tmp_path, "mobilenet_v3_small",
               {**PARAMS, "freeze_backbone_epochs": 1}) == 0
    metrics = json.loads((tmp_path / "job" / "out" / "metrics.json").read_text())
    assert metrics["weights"]["source"] == "s3" and metrics["weights"]["uri"].endswith(weights.file_name(SMALL))


# ---------------------------------------------------------------- the job: freezing, resuming


def test_a_frozen_backbone_keeps_its_weights_for_the_first_epochs(local_manifest, tmp_path, monkeypatch):
    state = publish_to_cache(SMALL)
    layout = models.architecture(SMALL)
    snapshots: list[dict[str, torch.Tensor]] = []
    real = engine.train_one_epoch

    def recording(model, *args, **kwargs):
        loss = real(model, *args, **kwargs)
        snapshots.append({name: p.detach().clone() for name, p in model.named_parameters()})
        return loss

    monkeypatch.setattr(engine, "train_one_epoch", recording)
    params = {**PARAMS, "epochs": 2, "freeze_backbone_epochs": 1}
    assert run(local_manifest("classification"), tmp_path, "mobilenet_v3_small", params) == 0
    after_first, after_second = snapshots
    backbone = [name for name in after_first if layout.is_backbone(name)]
    assert all(torch.equal(after_first[name], state[name]) for name in backbone)  # frozen in epoch 1
    assert any(not torch.equal(after_first[name], state[name]) for name in after_first if name.startswith("classifier"))
    assert any(not torch.equal(after_second[name], state[name]) for name in backbone)  # training in epoch 2


def test_a_resumed_job_keeps_its_weights_record_without_fetching(local_manifest, tmp_path, monkeypatch):
    publish_to_cache(SMALL)
    params = {**PARAMS, "epochs": 2}
    real = engine.train_one_epoch

    def stop_in_second_epoch(*args, **kwargs):
        if args[4] == 1:
            raise KeyboardInterrupt  # stands for the SIGTERM test's interruption; the checkpoint of epoch 1 stays
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(local_manifest("classification"), tmp_path, "mobilenet_v3_small", params)
    saved = torch.load(tmp_path / "job" / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert saved["weights"]["source"] == "cache"

    (weights.cache_dir() / weights.file_name(SMALL)).unlink()  # the retry runs on a machine without them
    monkeypatch.setattr(engine, "train_one_epoch", real)
    monkeypatch.setattr(weights, "find_weights", lambda *args, **kwargs: pytest.fail("a resumed job fetches nothing"))
    assert run(local_manifest("classification"), tmp_path, "mobilenet_v3_small", params) == 0
    metrics = json.loads((tmp_path / "job" / "out" / "metrics.json").read_text())
    assert metrics["weights"] == saved["weights"] and metrics["epochs"] == 2


def test_a_scratch_checkpoint_resumes_into_the_scratch_layout():
    template = TEMPLATES["fcos_resnet50_fpn"]
    model, record = weights.starting_model(template, 2, 64, {}, checkpoint={"weights": {"source": "none"}})
    assert not any(type(m).__name__ == "FrozenBatchNorm2d" for m in model.modules())
    model, record = weights.starting_model(template, 2, 64, {}, checkpoint={"weights": {"source": "cache"}})
    assert any(type(m).__name__ == "FrozenBatchNorm2d" for m in model.modules())
    _, record = weights.starting_model(template, 2, 64, {}, checkpoint={"model": {}})  # written before records
    assert record["source"] == "none" and "does not record" in record["reason"]


# ---------------------------------------------------------------- the docker build's download


def test_the_build_fetches_each_published_file_once_and_only_when_missing():
    calls: list[tuple[str, Path]] = []

    def fake(url: str, path: Path) -> None:
        calls.append((url, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")

    files = weights.fetch_all(fetch=fake)
    names = {weights.file_name(t) for t in TEMPLATES.values()}
    assert len(names) == 9  # 14 templates; a classifier and its multi-label variant share their weights
    assert sorted(path.name for _, path in calls) == sorted(names) == sorted(f.name for f in files)
    assert all(path.parent == weights.cache_dir() and url.endswith("/" + path.name) for url, path in calls)
    assert all(url.startswith("https://download.pytorch.org/models/") for url, _ in calls)
    calls.clear()
    assert len(weights.fetch_all(fetch=fake)) == 9 and calls == []


def test_a_failed_build_download_fails_the_build():
    def broken(url: str, path: Path) -> None:
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        weights.fetch_all([SMALL], fetch=broken)


def test_the_build_check_loads_every_template_from_the_cache(monkeypatch):
    chosen = [SMALL, TEMPLATES["mobilenet_v3_small_multilabel"], TEMPLATES["ssdlite320_mobilenet_v3_large"]]
    for template in chosen:
        publish_to_cache(template)
    weights.check_all(chosen)
    torch.save({"not": torch.zeros(1)}, weights.cache_dir() / weights.file_name(SMALL))
    with pytest.raises(SystemExit, match="mobilenet_v3_small: weights not usable from the cache"):
        weights.check_all(chosen)


def test_the_build_script_runs_as_a_module(monkeypatch, capsys):
    monkeypatch.setattr(weights, "download", lambda url, path: (path.parent.mkdir(parents=True, exist_ok=True),
                                                                path.write_bytes(b"x")))
    assert weights.main(["--no-check"]) == 0
    assert len(list(weights.cache_dir().iterdir())) == 9


# ---------------------------------------------------------------- download(): a server on 127.0.0.1


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ``content`` (set by the test); ``stall`` makes it never answer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        content = b""
        stall = threading.Event()

        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.stall.is_set():
                self.stall.wait(10)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.content)))
            self.end_headers()
            self.wfile.write(self.content)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.stall.clear()
    httpd.shutdown()


def test_download_checks_the_hash_in_the_name_and_keeps_no_partial_file(server, tmp_path):
    handler, base = server
    handler.content = b"some weights"
    digest = hashlib.sha256(handler.content).hexdigest()
    good = tmp_path / f"model-{digest[:8]}.pth"
    weights.download(f"{base}/model.pth", good)
    assert good.read_bytes() == b"some weights"
    bad = tmp_path / "model-00000000.pth"
    with pytest.raises(ValueError, match="does not start with 00000000"):
        weights.download(f"{base}/model.pth", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]


def test_download_gives_up_on_a_silent_server_within_its_timeout(server, tmp_path):
    handler, base = server
    handler.stall.set()
    started = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError, OSError)):
        weights.download(f"{base}/model.pth", tmp_path / "model-00.pth", timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert list(tmp_path.iterdir()) == []


def test_the_training_image_bakes_the_weights_in_and_never_downloads_at_run_time():
    # No Docker here: the Dockerfile is read, and the script it runs is the one tested above.
    root = Path(__file__).resolve().parents[3]
    dockerfile = (root / "training" / "Dockerfile").read_text()
    assert "ENV TORCH_HOME=/opt/torch" in dockerfile and f"{weights.ALLOW_DOWNLOAD}=0" in dockerfile
    assert "python -m sightline_training.weights --no-check" in dockerfile  # download into the build cache
    assert dockerfile.rstrip().endswith('ENTRYPOINT ["python", "-m", "sightline_training"]')
    # The base image's torch is the one the repository pins (and tests with).
    pinned = next(line.split("==")[1] for line in (root / "requirements.txt").read_text().splitlines()
                  if line.startswith("torch=="))
    assert f"ARG BASE_IMAGE=pytorch/pytorch:{pinned}-cuda" in dockerfile
