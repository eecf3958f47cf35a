"""A bounded load test of predict through the local stack's API front (loopback only), printed as a table.

    .venv/bin/python benchmarks/predict_load.py [--requests 2000] [--concurrency 8] [--template mobilenet_v3_small]

It starts the local stack, trains a small classifier (one epoch on generated shapes), then sends ``--requests``
predictions of a 640x480 JPEG from ``--concurrency`` client threads in a process of their own, and reports errors
(any answer but 200), p50/p95/p99 latency as the client sees it and requests per second. It stops after
``--max-seconds`` whatever is left, so a stuck stack cannot hang it. The target: zero errors.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import random
import socket
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

from sightline_local import synthetic
from sightline_client import RetryPolicy, SightlineClient, SightlineError
from sightline_local.stack import LocalStack, StackConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(api_url: str, api_key: str, model_id: str, image: bytes, requests: int, concurrency: int,
         max_seconds: float) -> tuple[list[float], Counter[str], float]:
    """(latencies of the answered requests in ms, answers by status or error, wall seconds): the clients."""
    # One try per request: a throttled or failed request is counted, never retried out of sight.
    client = SightlineClient(api_url, api_key, timeout=60, retry=RetryPolicy(attempts=1))
    deadline = time.monotonic() + max_seconds

    def one(_: int) -> tuple[str, float]:
        if time.monotonic() > deadline:
            return "not sent (time limit)", 0.0
        started = time.perf_counter()
        try:
            client.predict(model_id, image)
            status = "200"
        except SightlineError as error:
            status = str(error.status) if error.status else error.code
        return status, (time.perf_counter() - started) * 1000

    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in as_completed([pool.submit(one, n) for n in range(requests)]):
            status, milliseconds = future.result()
            outcomes[status] += 1
            if status == "200":
                latencies.append(milliseconds)
    return latencies, outcomes, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--template", default="mobilenet_v3_small")
    parser.add_argument("--max-seconds", type=float, default=900)
    args = parser.parse_args()
    for noisy in ("werkzeug", "botocore", "urllib3", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stack = LocalStack(StackConfig(aws_port=free_port(), api_port=free_port(), state_dir=Path(tempfile.mkdtemp()))).start()
    try:
        api = SightlineClient(stack.config.api_url, stack.api_key, timeout=300)
        stack.client("s3").put_object(Bucket=stack.output("DataBucketName"), Key="datasets/shapes/shapes.zip",
                                      Body=synthetic.classification_zip(per_class=8, size=64))
        assert api.wait_for_dataset("shapes", timeout=300)["status"] == "ready"
        created = api.create_model("load", "classification", ["shapes"], template=args.template,
                                   params={"epochs": 1, "image_size": 64, "batch_size": 8})
        model_id = created["model_id"]
        api.wait_for_version(model_id, created["version"], 900, interval=2)

        image, _ = synthetic.shapes_image(random.Random(7), 640, 480)
        jpeg = synthetic.encode(image, "JPEG")
        api.predict(model_id, jpeg)  # warm: the cold start is not load
        # The clients run in a process of their own, as they would on a user's machine, not in the stack's.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as clients:
            latencies, outcomes, seconds = clients.submit(send, stack.config.api_url, stack.api_key, model_id, jpeg,
                                                          args.requests, args.concurrency, args.max_seconds).result()
    finally:
        stack.stop()

    errors = sum(count for status, count in outcomes.items() if status != "200")
    print(f"\nPredict load through the local stack's API front on {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}: template {args.template}, one 640x480 JPEG "
          f"({len(jpeg)} bytes), {args.requests} requests, {args.concurrency} at a time\n")
    print("| requests | errors | p50 | p95 | p99 | mean | requests/s |\n| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {sum(outcomes.values())} | {errors} | {percentile(latencies, 0.5):.1f} ms | "
          f"{percentile(latencies, 0.95):.1f} ms | {percentile(latencies, 0.99):.1f} ms | "
          f"{statistics.fmean(latencies) if latencies else float('nan'):.1f} ms | {len(latencies) / seconds:.1f} |")
    if errors:
        print(f"\nanswers other than 200: {dict(outcome for outcome in outcomes.items() if outcome[0] != '200')}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
