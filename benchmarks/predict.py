"""Predict figures per template (speed, memory, package size, cost), printed as tables.

    .venv/bin/python benchmarks/predict.py [--templates mobilenet_v3_small ssdlite320_mobilenet_v3_large]
                                           [--requests 200] [--threads 1] [--cold 5] [--no-size]

Each template's model is built with random weights (nothing is downloaded) and exported as the training job
exports it (``sightline_training.export``, labels.json included). One 640x480 JPEG is predicted, warm, by:

- ``handler``: the predict function's ``app.handler`` with an API Gateway proxy event (the image base64-encoded,
  ``image/jpeg``), the model's records and artifacts in moto's in-process ``mock_aws`` (as tests/unit/predict);
  its two DynamoDB reads of the serving version are moto's, in this process.
- ``after lookup``: what the handler calls once it has the serving version: ``decode_image``, ``load_predictor``
  (cached), ``Predictor.predict``. ``+ draft`` passes ``decode_image`` the model's input size (``fit``), which
  decodes the JPEG at 1/2 scale (what the predict request does once it knows the predictor before decoding).
- ``eager``: the same model in PyTorch eager (``inference_mode``): Pillow decode, the training job's validation
  transform, forward; ``eager fwd``: the forward alone on a ready tensor.
- ``bare run``: ``session.run`` of the predictor's session on a ready tensor; ``decode + run``: a plain Pillow
  decode of the JPEG (full size, RGB) plus that run.

Timings alternate between the paths in rounds, so load from other work on the machine falls on all of them.
``cold`` starts a fresh Python process per run: imports of ``sightline.inference`` and ``sightline.imaging``,
the Predictor from local files and the first prediction (interpreter start-up not included); the peak memory is
that process's VmHWM after 20 more predictions, and "per request" its rise over the RSS with the model loaded.
Package sizes come from the Makefiles ``sam build`` runs (``functions/predict``, ``layers/sightline``) into a
temporary ARTIFACTS_DIR (pip downloads the Lambda wheels); unzipped bytes, as Lambda counts them.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import inspect
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sightline.imaging import decode_image

REPO = Path(__file__).resolve().parents[1]
SUPPORTS_FIT = "fit" in inspect.signature(decode_image).parameters
sys.path.insert(0, str(REPO / "tests"))  # the moto resources and event fixtures the predict tests use

TEMPLATE_SIZES = {"mobilenet_v3_small": 224, "ssdlite320_mobilenet_v3_large": 320}
CLASSES = [f"class_{i}" for i in range(5)]

# List prices, us-east-1, 2026-12-01 (aws.amazon.com/lambda/pricing, /api-gateway/pricing): Lambda per GB-second
# (first tier) and per request; API Gateway REST API per request (first 333 million a month).
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_REQUEST = 0.20 / 1e6
REST_API_REQUEST = 3.50 / 1e6
MEMORY_MB = 2048  # template.yaml, PredictFunction

COLD_SNIPPET = r"""
import json, sys, time
started = time.perf_counter()
import sightline.imaging as imaging
import sightline.inference as inference
imported = time.perf_counter()
model, labels, image_path = sys.argv[1], json.loads(open(sys.argv[2]).read()), sys.argv[3]
predictor = inference.Predictor(model, labels)
loaded = time.perf_counter()
def rss(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) * 1024
data = open(image_path, "rb").read()
spec = predictor.input_spec
options = {"fit": (spec.width, spec.height)} if sys.argv[4] == "draft" else {}
loaded_rss = rss("VmRSS:")
predictor.predict(imaging.decode_image(data, **options), None, 5)
first = time.perf_counter()
for _ in range(20):
    predictor.predict(imaging.decode_image(data, **options), None, 5)
print(json.dumps({"import": imported - started, "session": loaded - imported, "first": first - loaded,
                  "total": first - started, "loaded_rss": loaded_rss, "peak_rss": rss("VmHWM:")}))
"""


@dataclass
class Artifacts:
    template: str
    size: int
    directory: Path
    module: object  # the torch module, eval mode

    @property
    def model(self) -> Path:
        return self.directory / "model.onnx"

    @property
    def labels(self) -> dict:
        return json.loads((self.directory / "labels.json").read_text())


def build(template_id: str, workdir: Path) -> Artifacts:
    """The template's model, random weights, exported with labels.json as the training job does."""
    import torch
    from sightline.templates import TEMPLATES
    from sightline_training.export import export_onnx, labels_document
    from sightline_training.models import build_model, input_spec

    torch.manual_seed(0)
    template, size = TEMPLATES[template_id], TEMPLATE_SIZES[template_id]
    directory = workdir / template_id
    directory.mkdir(parents=True, exist_ok=True)
    module = build_model(template, len(CLASSES), size).eval()
    export_onnx(module, template, size, directory / "model.onnx")
    labels = labels_document(template, CLASSES, input_spec(template, size))
    (directory / "labels.json").write_text(json.dumps(labels))
    return Artifacts(template_id, size, directory, module)


def photo_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A 640x480 JPEG with what photos have: smooth gradients, edges of shapes, a little sensor noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200 + 30, y / height * 180 + 40, (x + y) / (width + height) * 150 + 60], axis=-1)
    image = Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
        box = (x0, y0, x0 + int(rng.integers(30, 200)), y0 + int(rng.integers(30, 160)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def timed_rounds(paths: dict[str, Callable[[], object]], requests: int, round_size: int = 10) -> dict[str, list[float]]:
    """Milliseconds per call of each path, the paths taking turns ``round_size`` calls at a time."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for call in paths.values():  # warm-up: sessions' first runs, caches
        for _ in range(3):
            call()
    for _ in range(math.ceil(requests / round_size)):
        for name, call in paths.items():
            for _ in range(round_size):
                started = time.perf_counter()
                call()
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class HandlerBench:
    """The predict function's handler and the model lookup's result, in moto's in-process mock."""

    def __init__(self) -> None:
        from support import TEST_ENV

        os.environ.update(TEST_ENV)
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # a log line per request would be timed too
        from moto import mock_aws

        self._mock = mock_aws()
        self._mock.start()
        from support import LambdaContext, create_resources, load_event, load_function

        self.resources = create_resources()
        self.handler = load_function("predict").handler
        self.context = LambdaContext(memory_limit_in_mb=MEMORY_MB)
        self.event_template = load_event("apigw_predict_image.json")

    def seed(self, artifacts: Artifacts) -> str:
        from sightline import contract, model_registry

        labels = artifacts.labels
        created, _ = model_registry.create_model(name=artifacts.template, task=labels["task"], datasets=["bench"],
                                                 template=labels["template"], params={})
        model_id = created["model_id"]
        prefix = contract.version_prefix(model_id, 1)
        stored = {"model": f"{prefix}model.onnx", "labels": f"{prefix}labels.json"}
        s3 = self.resources.s3
        s3.put_object(Bucket=self.resources.artifact_bucket, Key=stored["model"], Body=artifacts.model.read_bytes())
        s3.put_object(Bucket=self.resources.artifact_bucket, Key=stored["labels"], Body=json.dumps(labels))
        model_registry.update_version(model_id, 1, status="ready", artifacts=stored, promoted=True)
        model_registry.update_model(model_id, status="ready", serving_version=1, classes=labels["classes"])
        return model_id

    def event(self, model_id: str, jpeg: bytes) -> dict:
        event = json.loads(json.dumps(self.event_template))
        event["pathParameters"]["id"] = model_id
        event["headers"] = {"content-type": "image/jpeg"}
        event["multiValueHeaders"] = {"content-type": ["image/jpeg"]}
        event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
        event["body"], event["isBase64Encoded"] = base64.b64encode(jpeg).decode(), True
        return event

    def call(self, event: dict) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):  # the EMF metrics each invocation prints
            response = self.handler(event, self.context)
        if response["statusCode"] != 200:
            raise RuntimeError(f"handler answered {response['statusCode']}: {response['body']}")
        return response


def eager_paths(artifacts: Artifacts, jpeg: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    """(decode + validation transform + forward, forward alone) in PyTorch eager."""
    import torch
    from sightline.contract import DETECTION
    from sightline_training.data import classification_transforms, detection_transforms

    detector = artifacts.labels["task"] == DETECTION
    transform = (detection_transforms if detector else classification_transforms)(artifacts.size, train=False)
    module = artifacts.module

    def forward(tensor: torch.Tensor) -> object:
        with torch.inference_mode():
            return module([tensor]) if detector else module(tensor[None])

    ready = transform(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    return (lambda: forward(transform(Image.open(io.BytesIO(jpeg)).convert("RGB")))), (lambda: forward(ready))


def warm_figures(artifacts: Artifacts, bench: HandlerBench, jpeg: bytes, requests: int) -> dict[str, list[float]]:
    from sightline import model_registry
    from sightline.imaging import decode_image, to_tensor
    from sightline.inference import load_predictor

    model_id = bench.seed(artifacts)
    event = bench.event(model_id, jpeg)
    answer = json.loads(bench.call(event)["body"])  # loads the predictor into the process's cache
    _model, version = model_registry.serving_version(model_id)
    predictor = load_predictor(model_id, version)
    spec = predictor.input_spec
    fit = (spec.width, spec.height)
    tensor = to_tensor(Image.open(io.BytesIO(jpeg)).convert("RGB"), spec)
    session, outputs, feed = predictor._session, predictor._output_names, {spec.name: tensor}

    def after_lookup(draft: bool) -> Callable[[], object]:
        options = {"fit": fit} if draft else {}

        def call() -> object:
            image = decode_image(jpeg, **options)
            return load_predictor(model_id, version).predict(image, None, 5)
        return call

    eager, eager_forward = eager_paths(artifacts, jpeg)
    samples = timed_rounds({
        "handler": lambda: bench.call(event),
        "after lookup": after_lookup(False),
        # Before decode_image took ``fit`` (benchmarking an older commit) this is the same path again.
        "after lookup + draft": after_lookup(SUPPORTS_FIT),
        "eager": eager,
        "eager fwd": eager_forward,
        "bare run": lambda: session.run(outputs, feed),
        "decode + run": lambda: (Image.open(io.BytesIO(jpeg)).convert("RGB"), session.run(outputs, feed)),
    }, requests)
    print(f"  {artifacts.template}: {len(answer['predictions'])} predictions, first {answer['predictions'][:1]}")
    return samples


def optimized_copy(model: Path) -> Path:
    """The model with onnxruntime's basic graph optimizations (constant folding, redundant nodes) saved: plain ONNX
    ops, so the file runs on any CPU; the session still applies the extended and layout ones at load."""
    import onnxruntime as ort

    target = model.with_name("model.basic.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    return target


def cold_start(artifacts: Artifacts, image_path: Path, runs: int, threads: int, draft: bool,
               model: Path | None = None) -> dict[str, float]:
    """Medians over ``runs`` fresh processes (see COLD_SNIPPET)."""
    env = {**os.environ, "SIGHTLINE_PREDICT_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    results = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", COLD_SNIPPET, str(model or artifacts.model),
                               str(artifacts.directory / "labels.json"), str(image_path),
                               "draft" if draft else "full"], env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def package_sizes() -> dict[str, int] | None:
    """Unzipped bytes of the predict function and of the layer as their Makefiles build them, biggest folders."""
    with tempfile.TemporaryDirectory() as tmp:
        built = {}
        for name, folder, target in (("function", "functions/predict", "build-PredictFunction"),
                                     ("layer", "layers/sightline", "build-SightlineLayer")):
            out = Path(tmp) / name
            out.mkdir()
            done = subprocess.run(["make", "-s", "-C", str(REPO / folder), target, f"ARTIFACTS_DIR={out}"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {target} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
                return None
            built[name] = out
        sizes = {name: _tree_bytes(path) for name, path in built.items()}
        tops = []
        for name, path in built.items():
            root = path / "python" if name == "layer" else path
            tops += [(f"{name}: {child.name}", _tree_bytes(child)) for child in root.iterdir()]
        for label, size in sorted(tops, key=lambda item: -item[1])[:8]:
            print(f"  {label:45s} {size / 1e6:7.1f} MB")
        return sizes


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def cost_per_million(duration_ms: float, architecture: str) -> float:
    """Lambda (billed per started millisecond at MEMORY_MB) plus API Gateway REST for one million predictions."""
    gb_seconds = math.ceil(duration_ms) / 1000 * MEMORY_MB / 1024
    return 1e6 * (gb_seconds * LAMBDA_GB_SECOND[architecture] + LAMBDA_REQUEST + REST_API_REQUEST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATE_SIZES), choices=list(TEMPLATE_SIZES))
    parser.add_argument("--requests", type=int, default=200, help="timed calls per path and template")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--cold", type=int, default=5, help="fresh processes per cold-start figure")
    parser.add_argument("--no-size", action="store_true", help="skip building the function and the layer")
    args = parser.parse_args()

    os.environ["SIGHTLINE_PREDICT_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}, {args.threads} thread(s), {args.requests} requests per path")
    workdir = Path(tempfile.mkdtemp(prefix="sightline-predict-bench-"))
    try:
        jpeg = photo_jpeg()
        image_path = workdir / "photo.jpg"
        image_path.write_bytes(jpeg)
        print(f"image: 640x480 JPEG, {len(jpeg)} bytes")
        bench = HandlerBench()
        rows = []
        for template in args.templates:
            artifacts = build(template, workdir)
            samples = warm_figures(artifacts, bench, jpeg, args.requests)
            cold = cold_start(artifacts, image_path, args.cold, args.threads, draft=False)
            cold_draft = cold_start(artifacts, image_path, args.cold, args.threads, draft=SUPPORTS_FIT,
                                    model=optimized_copy(artifacts.model))
            rows.append((template, samples, cold, cold_draft))
        print(f"\nwarm, ms p50 / p95 ({args.threads} thread(s)); load average now {os.getloadavg()[0]:.1f}")
        names = list(rows[0][1])
        print("| template | " + " | ".join(names) + " |")
        print("| --- " * (len(names) + 1) + "|")
        for template, samples, _, _ in rows:
            cells = [f"{percentile(samples[n], 50):.2f} / {percentile(samples[n], 95):.2f}" for n in names]
            print(f"| {template} | " + " | ".join(cells) + " |")
        print("\nratios of p50 | eager / handler | eager / after lookup (+ draft) | after lookup (+ draft) / "
              "(decode + run) | cold start (pre-optimized model + draft), s | import / session / first, s | "
              "(pre-optimized) | peak RSS, MiB | "
              "per request, MiB")
        for template, samples, cold, cold_draft in rows:
            p50 = {n: percentile(samples[n], 50) for n in names}
            print(f"| {template} | {p50['eager'] / p50['handler']:.2f} | "
                  f"{p50['eager'] / p50['after lookup']:.2f} ({p50['eager'] / p50['after lookup + draft']:.2f}) | "
                  f"{p50['after lookup'] / p50['decode + run']:.2f} "
                  f"({p50['after lookup + draft'] / p50['decode + run']:.2f}) | "
                  f"{cold['total']:.3f} ({cold_draft['total']:.3f}) | "
                  f"{cold['import']:.3f} / {cold['session']:.3f} / {cold['first']:.3f} | "
                  f"{cold_draft['import']:.3f} / {cold_draft['session']:.3f} / {cold_draft['first']:.3f} | "
                  f"{cold['peak_rss'] / 2**20:.0f} | {(cold['peak_rss'] - cold['loaded_rss']) / 2**20:.1f} |")
        print(f"\nthroughput and cost: one request per vCPU at a time, the handler's p50 as Lambda's duration at "
              f"{MEMORY_MB} MB; prices: Lambda x86_64 ${LAMBDA_GB_SECOND['x86_64']}/GB-s, arm64 "
              f"${LAMBDA_GB_SECOND['arm64']}/GB-s, ${LAMBDA_REQUEST * 1e6:.2f}/M requests; API Gateway REST "
              f"${REST_API_REQUEST * 1e6:.2f}/M (us-east-1); arm64 assumes the x86_64 duration (not measured)")
        print("| template | requests/s per vCPU (handler, after lookup + draft) | $ per million, x86_64 | arm64 |")
        for template, samples, _, _ in rows:
            handler_ms = percentile(samples["handler"], 50)
            print(f"| {template} | {1000 / handler_ms:.0f}, {1000 / percentile(samples['after lookup + draft'], 50):.0f}"
                  f" | {cost_per_million(handler_ms, 'x86_64'):.2f} | {cost_per_million(handler_ms, 'arm64'):.2f} |")
        if not args.no_size:
            print("\npackage, unzipped (make targets of sam build, Lambda's Python 3.12 x86_64 wheels):")
            sizes = package_sizes()
            if sizes:
                print(f"  function {sizes['function'] / 1e6:.1f} MB + layer {sizes['layer'] / 1e6:.1f} MB = "
                      f"{(sizes['function'] + sizes['layer']) / 1e6:.1f} MB (limit 250 MB)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
