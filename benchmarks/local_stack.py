"""Figures for the local stack, measured on this machine and printed as a table.

    .venv/bin/python benchmarks/local_stack.py [--images 400] [--predictions 50]

It starts the stack, registers a generated class-folder zip, trains a small classifier, then times predictions
through the API front (the predict function in its warm worker) against the same model run in this process
with ``sightline.inference.Predictor``: the ratio is what the Lambda-and-HTTP path costs on top of inference.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path


from sightline_local import synthetic
from sightline_client import RetryPolicy, SightlineClient, TrainingFailed
from sightline_local.stack import LocalStack, StackConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="images in the registered zip (split over 2 classes)")
    parser.add_argument("--predictions", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    stack = LocalStack(StackConfig(aws_port=free_port(), api_port=free_port(), state_dir=Path(tempfile.mkdtemp()))).start()
    rows.append(("stack start (moto + template deploy + API front)", f"{time.perf_counter() - started:.1f} s"))
    try:
        # No retries: a request that fails is the benchmark's failure, not hidden in a slower figure.
        api = SightlineClient(stack.config.api_url, stack.api_key, timeout=300, retry=RetryPolicy(attempts=1))
        archive = synthetic.classification_zip(per_class=args.images // 2, size=64, seed=1)
        started = time.perf_counter()
        stack.client("s3").put_object(Bucket=stack.output("DataBucketName"), Key="datasets/bench/bench.zip", Body=archive)
        assert api.wait_for_dataset("bench", timeout=600, settle=0, interval=0.2)["status"] == "ready"
        seconds = time.perf_counter() - started
        rows.append((f"register a {len(archive) / 1e6:.1f} MB zip of {args.images} images", f"{seconds:.1f} s ({args.images / seconds:.0f} images/s)"))

        started = time.perf_counter()
        created = api.create_model("bench", "classification", ["bench"],
                                   params={"epochs": args.epochs, "image_size": 64, "batch_size": 32})
        model_id = created["model_id"]
        try:
            api.wait_for_version(model_id, created["version"], 1800, interval=1)
        except TrainingFailed as failed:
            raise SystemExit(f"training failed: {failed.message}") from None
        rows.append((f"train mobilenet_v3_small, {args.epochs} epochs at 64 px, API call to ready", f"{time.perf_counter() - started:.1f} s"))

        image, _ = synthetic.shapes_image(random.Random(3), 320, 240, labels=("circle",))
        body = synthetic.encode(image, "JPEG")
        started = time.perf_counter()
        api.predict(model_id, body)
        cold = time.perf_counter() - started
        warm = []
        for _ in range(args.predictions):
            started = time.perf_counter()
            api.predict(model_id, body)
            warm.append(time.perf_counter() - started)

        from sightline import inference
        from sightline.imaging import decode_image

        artifacts = api.get_version(model_id, 1)["artifacts"]
        s3 = stack.client("s3")
        fetch = lambda uri: s3.get_object(Bucket=uri.split("/")[2], Key=uri.split("/", 3)[3])["Body"].read()  # noqa: E731
        import json

        predictor = inference.Predictor(fetch(artifacts["model"]), json.loads(fetch(artifacts["labels"])))
        direct = []
        for _ in range(args.predictions):
            started = time.perf_counter()
            predictor.predict(decode_image(body), threshold=0.0, max_results=5)
            direct.append(time.perf_counter() - started)

        rows.append(("predict, first request (model download + ONNX session)", f"{cold * 1000:.0f} ms"))
        rows.append((f"predict through the API front, warm, p50 / p95 of {args.predictions}",
                     f"{statistics.median(warm) * 1000:.1f} / {percentile(warm, 0.95) * 1000:.1f} ms"))
        rows.append(("same model in-process (decode + Predictor.predict), p50",
                     f"{statistics.median(direct) * 1000:.1f} ms"))
        rows.append(("ratio: warm API path / in-process", f"{statistics.median(warm) / statistics.median(direct):.1f}x"))
    finally:
        stack.stop()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {platform.platform()}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
