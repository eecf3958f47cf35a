"""Registration figures through the local stack (S3 -> queue -> register function in batches), printed as a table.

    .venv/bin/python benchmarks/registration.py [--zip-images 5000] [--loose-images 2000] [--format-images 500]

For each upload it reports wall time, images per second (the local stack runs one register batch at a time, so this
is also the rate of one register worker), and the peak resident memory of the register workers (their VmHWM). The loose upload goes through the same batches as on AWS, so its ratio to a zip of the same images
is the figure the debounce is for: the issue's target is at most 2.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import random
import socket
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sightline_local import synthetic
from sightline_local.client import SightlineClient
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


def register_workers_peak_kib() -> int:
    """The highest VmHWM among this process's descendants that serve the register function."""
    peak = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if b"RegisterDatasetFunction" not in environ and b"register-dataset" not in environ.lower():
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip-images", type=int, default=5000)
    parser.add_argument("--loose-images", type=int, default=2000)
    parser.add_argument("--format-images", type=int, default=500)
    args = parser.parse_args()

    stack = LocalStack(StackConfig(aws_port=free_port(), api_port=free_port(), state_dir=Path(tempfile.mkdtemp()))).start()
    rows: list[tuple[str, str, str, str]] = []
    try:
        api = SightlineClient(stack.config.api_url, stack.api_key, timeout=300)
        s3, bucket = stack.client("s3"), stack.output("DataBucketName")

        def timed(name: str, count: int, upload) -> float:
            started = time.perf_counter()
            upload()
            api.wait_for(f"/v1/datasets/{name}", lambda d: d.get("images") == count and d["status"] == "ready",
                         timeout=3600, interval=0.5)
            seconds = time.perf_counter() - started
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

        def upload_loose() -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda item: s3.put_object(Bucket=bucket, Key=f"datasets/loose/{item[0]}", Body=item[1]),
                              loose))

        loose_seconds = timed("loose", len(loose), upload_loose)
        row(f"{len(loose)} loose uploads (8 at a time)", len(loose), loose_seconds)

        detection = images(args.format_images, seed=3)
        for name, build in (("voc", voc_archive), ("yolo", yolo_archive)):
            data = build(detection)
            seconds = timed(name, len(detection),
                            lambda: s3.put_object(Bucket=bucket, Key=f"datasets/{name}/export.zip", Body=data))
            row(f"{name.upper()} zip of {len(detection)} images", len(detection), seconds)
    finally:
        stack.stop()

    print(f"\nRegistration through the local stack on {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}\n")
    print(f"| upload | time | images/s | register workers' peak RSS |\n| --- | --- | --- | --- |")
    for what, seconds, rate, memory in rows:
        print(f"| {what} | {seconds} | {rate} | {memory} |")
    print(f"\nloose uploads / the same images zipped: {loose_seconds / zip_seconds:.2f}x (target: at most 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
