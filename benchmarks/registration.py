"""Registration figures through the local stack (S3 -> queue -> register function in batches), printed as a table.

    .venv/bin/python benchmarks/registration.py [--zip-images 5000] [--loose-images 2000] [--format-images 500]

For each upload it reports wall time, images per second (the local stack runs one register batch at a time, so this
is also the rate of one register worker), and the peak resident memory of the register workers (their VmHWM). The loose upload goes through the same batches as on AWS, so its ratio to a zip of the same images
is the figure the debounce is for: the issue's target is at most 2.
"""
from __future__ import annotations

import argparse
import io
import logging
import multiprocessing
import os
import platform
import random
import re
import socket
import tempfile
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from sightline_local import synthetic
from sightline_client import SightlineClient
from sightline_local.stack import LocalStack, StackConfig

LABELS = ("circle", "square")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images(count: int, size: int = 64, seed: int = 0) -> list[tuple[str, bytes, list]]:
    rng = random.Random(seed)
    made = []
    for number in range(count):
        label = LABELS[number % 2]
        image, boxes = synthetic.shapes_image(rng, size, size, count=1, labels=(label,))
        made.append((f"{label}/{number:05d}.png", synthetic.encode(image), boxes))
    return made


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def voc_archive(items: list[tuple[str, bytes, list]]) -> bytes:
    members = {}
    for path, data, boxes in items:
        stem = Path(path).stem
        objects = "".join(f"<object><name>{b.label}</name><bndbox><xmin>{b.x_min + 1}</xmin><ymin>{b.y_min + 1}</ymin>"
                          f"<xmax>{b.x_max}</xmax><ymax>{b.y_max}</ymax></bndbox></object>" for b in boxes)
        members[f"Annotations/{stem}.xml"] = (f"<annotation><filename>{stem}.png</filename><size><width>64</width>"
                                              f"<height>64</height></size>{objects}</annotation>").encode()
        members[f"JPEGImages/{stem}.png"] = data
    return zipped(members)


def yolo_archive(items: list[tuple[str, bytes, list]]) -> bytes:
    members = {"data.yaml": b"names: [circle, square]\n"}
    for path, data, boxes in items:
        stem = Path(path).stem
        members[f"images/train/{stem}.png"] = data
        members[f"labels/train/{stem}.txt"] = "\n".join(
            f"{LABELS.index(b.label)} {(b.x_min + b.x_max) / 128} {(b.y_min + b.y_max) / 128} "
            f"{(b.x_max - b.x_min) / 64} {(b.y_max - b.y_min) / 64}" for b in boxes).encode()
    return zipped(members)


class MotoCalls:
    """Every request the in-process moto server answers, by operation: count and CPU seconds of its thread
    (``--profile``). moto is one process on the machine's cores, so calls per object are what bound the rate."""

    _SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__
        calls = self

        def timed(app, environ, start_response):  # type: ignore[no-untyped-def]
            started = time.thread_time()
            try:
                return original(app, environ, start_response)
            finally:
                calls.add(calls.operation(environ), time.thread_time() - started)

        DomainDispatcherApplication.__call__ = timed

    def operation(self, environ: dict) -> str:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            service = "dynamodb" if target.startswith("DynamoDB") else target.split(".")[0].lower().replace("amazon", "")
            return f"{service}:{target.split('.')[-1]}"
        match = self._SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = match.group(1) if match else "?"
        method, query = environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", "")
        if service == "s3":
            detail = [word for word, present in (
                ("range", "HTTP_RANGE" in environ), ("if-match", "HTTP_IF_MATCH" in environ),
                ("if-none-match", "HTTP_IF_NONE_MATCH" in environ), ("list", "list-type" in query),
                ("delete", query.startswith("delete"))) if present]
            return f"s3:{method}{'(' + ','.join(detail) + ')' if detail else ''}"
        return f"{service}:{method} {environ.get('PATH_INFO', '').split('/')[1:2]}"

    def add(self, operation: str, cpu: float) -> None:
        with self._lock:
            self.counts[operation] += 1
            self.cpu[operation] += cpu

    def take(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            taken = (self.counts, self.cpu)
            self.counts, self.cpu = Counter(), Counter()
        return taken


def print_calls(what: str, objects: int, calls: tuple[Counter[str], Counter[str]], cpu_used: tuple[float, float]) -> None:
    counts, cpu = calls
    print(f"\n{what}: CPU of the register workers {cpu_used[0]:.1f} s, of the stack's process {cpu_used[1]:.1f} s; "
          f"moto calls {sum(counts.values())}, {sum(cpu.values()):.1f} s of moto CPU\n")
    print("| operation | calls | per image | moto CPU s |\n| --- | --- | --- | --- |")
    for operation, count in counts.most_common():
        print(f"| {operation} | {count} | {count / objects:.2f} | {cpu[operation]:.1f} |")


def put_objects(endpoint: str, bucket: str, objects: list[tuple[str, bytes]]) -> None:
    """Upload ``objects`` (key, bytes) 8 at a time, as a user's client does."""
    import boto3

    from sightline_local.stack import LOCAL_CREDENTIALS

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1]), objects))


def register_workers() -> list[str]:
    """The pids of this machine's processes that serve the register function."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"RegisterDatasetFunction" in environ or b"register-dataset" in environ.lower():
            found.append(pid)
    return found


def register_workers_peak_kib() -> int:
    """The highest VmHWM among the register function's workers."""
    peak = 0
    for pid in register_workers():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak


def cpu_seconds() -> tuple[float, float]:
    """CPU time so far of the register function's workers, and of this process (moto, the poller, uploads)."""
    workers = 0.0
    for pid in register_workers():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        workers += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return workers, own.user + own.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip-images", type=int, default=5000)
    parser.add_argument("--loose-images", type=int, default=2000)
    parser.add_argument("--format-images", type=int, default=500)
    parser.add_argument("--chunked-zip-images", type=int, default=0,
                        help="also a zip this big, registered in chunks (above ARCHIVE_CHUNK_MEMBERS, 5,000)")
    parser.add_argument("--profile", action="store_true", help="count moto's calls per operation for each upload")
    parser.add_argument("--uploads-in-process", action="store_true",
                        help="upload the loose images from this process (moto's) instead of one of their own")
    args = parser.parse_args()
    for noisy in ("werkzeug", "botocore", "urllib3", "moto"):  # quiet, as `sightline local up` is
        logging.getLogger(noisy).setLevel(logging.WARNING)
    calls = MotoCalls()
    if args.profile:
        calls.install()
    profiles: list[tuple[str, int, tuple[Counter[str], Counter[str]], tuple[float, float]]] = []

    stack = LocalStack(StackConfig(aws_port=free_port(), api_port=free_port(), state_dir=Path(tempfile.mkdtemp()))).start()
    rows: list[tuple[str, str, str, str]] = []
    try:
        api = SightlineClient(stack.config.api_url, stack.api_key, timeout=300)
        s3, bucket = stack.client("s3"), stack.output("DataBucketName")

        dynamodb, table = stack.client("dynamodb"), stack.output("TableName")

        def registered(name: str, count: int) -> bool:
            # The dataset's META item, read directly: polling GET /v1/datasets/{name} reads its classes and issues
            # too, and each of those queries scans the whole table in moto, slowing what is being measured.
            item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"DATASET#{name}"}, "sk": {"S": "META"}},
                                     ConsistentRead=True).get("Item", {})
            return item.get("images", {}).get("N") == str(count) and item.get("status", {}).get("S") == "ready"

        upload_seconds: dict[str, float] = {}  # until the last upload was answered

        def timed(name: str, count: int, upload) -> float:
            calls.take()
            cpu_before = cpu_seconds()
            started = time.perf_counter()
            upload()
            upload_seconds[name] = time.perf_counter() - started
            deadline = started + 3600
            while not registered(name, count):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"dataset {name} did not register {count} images within an hour")
                time.sleep(0.25)
            seconds = time.perf_counter() - started
            assert api.get_dataset(name)["images"] == count  # and the API agrees
            cpu_after = cpu_seconds()
            profiles.append((name, count, calls.take(), (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])))
            return seconds

        def row(what: str, count: int, seconds: float) -> None:
            rows.append((what, f"{seconds:.1f} s", f"{count / seconds:.0f}", f"{register_workers_peak_kib() / 1024:.0f} MiB"))

        big = images(args.zip_images, seed=1)
        archive = zipped({path: data for path, data, _ in big})
        seconds = timed("zip", len(big), lambda: s3.put_object(Bucket=bucket, Key="datasets/zip/all.zip", Body=archive))
        row(f"zip of {len(big)} images ({len(archive) / 1e6:.0f} MB)", len(big), seconds)

        loose = images(args.loose_images, seed=2)
        same_as_zip = zipped({path: data for path, data, _ in loose})
        zip_seconds = timed("loose-zip", len(loose),
                            lambda: s3.put_object(Bucket=bucket, Key="datasets/loose-zip/all.zip", Body=same_as_zip))
        row(f"the {len(loose)} images below, as one zip", len(loose), zip_seconds)

        objects = [(f"datasets/loose/{path}", data) for path, data, _ in loose]

        def upload_loose() -> None:
            if args.uploads_in_process:
                put_objects(stack.config.endpoint, bucket, objects)
                return
            # The user's client is not the service: it runs in a process of its own, as it would on their machine,
            # instead of taking turns with moto for this process's interpreter.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as uploader:
                uploader.submit(put_objects, stack.config.endpoint, bucket, objects).result()

        loose_seconds = timed("loose", len(loose), upload_loose)
        row(f"{len(loose)} loose uploads (8 at a time)", len(loose), loose_seconds)

        detection = images(args.format_images, seed=3)
        for name, build in (("voc", voc_archive), ("yolo", yolo_archive)):
            data = build(detection)
            seconds = timed(name, len(detection),
                            lambda name=name, data=data: s3.put_object(Bucket=bucket, Key=f"datasets/{name}/export.zip",
                                                                       Body=data))
            row(f"{name.upper()} zip of {len(detection)} images", len(detection), seconds)

        if args.chunked_zip_images:
            chunked = images(args.chunked_zip_images, seed=4)
            archive = zipped({path: data for path, data, _ in chunked})
            del chunked
            seconds = timed("chunked", args.chunked_zip_images,
                            lambda: s3.put_object(Bucket=bucket, Key="datasets/chunked/all.zip", Body=archive))
            chunks = -(-args.chunked_zip_images // 5000)
            row(f"zip of {args.chunked_zip_images} images ({len(archive) / 1e6:.0f} MB) in {chunks} chunks of 5000, "
                "one at a time", args.chunked_zip_images, seconds)
    finally:
        stack.stop()

    print(f"\nRegistration through the local stack on {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}\n")
    print("| upload | time | images/s | register workers' peak RSS |\n| --- | --- | --- | --- |")
    for what, seconds, rate, memory in rows:
        print(f"| {what} | {seconds} | {rate} | {memory} |")
    print(f"\nloose uploads / the same images zipped: {loose_seconds / zip_seconds:.2f}x (target: at most 2x); "
          f"the loose uploads themselves were answered after {upload_seconds['loose']:.1f} s")
    if args.profile:
        for name, count, taken, cpu_used in profiles:
            print_calls(name, count, taken, cpu_used)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
