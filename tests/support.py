"""Helpers shared by the tests (importable as ``support``: pytest puts tests/ on the path).

Fixtures live in the ``conftest.py`` of the folder that uses them (``tests/conftest.py`` for those every folder
uses); what a test calls directly is here, imported by name like any module.
"""
from __future__ import annotations

import importlib.util
import io
import json
import random
import socket
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, TypeVar

import requests
from sightline_client import RetryPolicy, SightlineClient, SightlineError

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "events"

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "TABLE_NAME": "sightline-test",
    "DATA_BUCKET": "sightline-test-data",
    "ARTIFACT_BUCKET": "sightline-test-artifacts",
    "EVENT_BUS_NAME": "sightline-test-bus",
    "DATASET_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/sightline-test-datasets",
    "TRAINING_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:sightline-test-train",
    "POWERTOOLS_SERVICE_NAME": "sightline-test",
    "POWERTOOLS_METRICS_NAMESPACE": "SightlineTest",
}


def load_event(name: str) -> dict:
    """A JSON event fixture from ``tests/events``."""
    return json.loads((EVENTS / name).read_text())


# ---------------------------------------------------------------- Lambda functions

_MODULES: dict[Path, ModuleType] = {}


def load_module(path: Path | str) -> ModuleType:
    """The Python file at ``path`` (in this repository), imported once under a name of its own.

    Every function's handler module is called ``app``, so each is imported as ``sightline_test_`` followed by its
    path (``functions/predict/app.py`` is ``sightline_test_functions_predict_app``).
    """
    path = Path(path).resolve()
    if path not in _MODULES:
        name = "sightline_test_" + "_".join(path.relative_to(REPO).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _MODULES[path] = module
    return _MODULES[path]


def load_function(name: str) -> ModuleType:
    """The handler module of the Lambda function ``name``: ``functions/<name>/app.py``, loaded once per name."""
    return load_module(REPO / "functions" / name / "app.py")


@dataclass(frozen=True)
class LambdaContext:
    """The Lambda context a handler is called with: what Powertools' ``inject_lambda_context`` reads of it."""

    function_name: str = "sightline-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    remaining_time_in_millis: int = 30_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_time_in_millis


# ---------------------------------------------------------------- AWS resources (moto)


def create_resources() -> SimpleNamespace:
    """The table, buckets and bus the template declares, created in the active moto mock."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TEST_ENV["TABLE_NAME"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    s3 = boto3.client("s3")
    for bucket in (TEST_ENV["DATA_BUCKET"], TEST_ENV["ARTIFACT_BUCKET"]):
        s3.create_bucket(Bucket=bucket)
    boto3.client("events").create_event_bus(Name=TEST_ENV["EVENT_BUS_NAME"])
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=TEST_ENV["DATASET_QUEUE_URL"].rsplit("/", 1)[1])["QueueUrl"]
    return SimpleNamespace(
        sqs=sqs,
        dataset_queue_url=queue_url,
        s3=s3,
        dynamodb=dynamodb,
        table=boto3.resource("dynamodb").Table(TEST_ENV["TABLE_NAME"]),
        data_bucket=TEST_ENV["DATA_BUCKET"],
        artifact_bucket=TEST_ENV["ARTIFACT_BUCKET"],
    )


def create_training_state_machine() -> str:
    """A stand-in for the training state machine at ``TRAINING_STATE_MACHINE_ARN`` (one Pass state), in moto."""
    import boto3

    definition = {"StartAt": "Noop", "States": {"Noop": {"Type": "Pass", "End": True}}}
    return boto3.client("stepfunctions").create_state_machine(
        name=TEST_ENV["TRAINING_STATE_MACHINE_ARN"].rsplit(":", 1)[1],
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/sightline-test-train",
    )["stateMachineArn"]


class _Intercepted:
    """A boto3 client or Table whose ``operation`` runs ``call(real_operation, **kwargs)``; the rest is the real one."""

    def __init__(self, real: Any, operation: str, call: Callable[..., Any]) -> None:
        self._real, self._operation, self._call = real, operation, call

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._operation:
            return attribute
        return lambda **kwargs: self._call(attribute, **kwargs)


def intercept_aws(monkeypatch, service: str, operation: str, call: Callable[..., Any]) -> None:
    """Fault injection and interleaving at the AWS boundary, for the rest of the test.

    ``operation`` of ``sightline.aws.client(service)`` runs ``call(real_operation, **kwargs)`` instead, which may
    raise what AWS would, or do something in between and then call ``real_operation(**kwargs)``; every other
    operation and every other client stay moto's. ``service="table"`` intercepts the DynamoDB Table resources that
    ``sightline.aws.table`` gives.
    """
    from sightline import aws

    attribute = "table" if service == "table" else "client"
    real = getattr(aws, attribute)

    def replacement(name: str) -> Any:
        target = real(name)
        if attribute == "client" and name != service:
            return target
        return _Intercepted(target, operation, call)

    replacement.cache_clear = real.cache_clear  # aws.reset() still clears the real caches
    monkeypatch.setattr(aws, attribute, replacement)


# ---------------------------------------------------------------- datasets


def png(seed: int = 0, size: int = 32, label: str = "circle") -> bytes:
    """A small valid PNG; different seeds give different content (and so a different sha256)."""
    from sightline_local import synthetic

    image, _ = synthetic.shapes_image(random.Random(seed), size, size, count=1, labels=(label,))
    return synthetic.encode(image)


def make_zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Datasets:
    """Datasets as the register function makes them: objects uploaded to the moto data bucket and registered with
    ``sightline.datasets.registration.register_object``, so every dataset a test reads is one the real code wrote.
    """

    def __init__(self, resources: SimpleNamespace) -> None:
        self.resources = resources
        self._uploads = 0  # numbers each whole-dataset upload: its key, and the seeds of its distinct images

    def upload(self, key: str, data: bytes) -> str:
        """Put ``data`` at ``key`` in the data bucket; its ETag."""
        return self.resources.s3.put_object(Bucket=self.resources.data_bucket, Key=key, Body=data)["ETag"].strip('"')

    def register(self, key: str, data: bytes | None = None, **kwargs: Any) -> dict:
        """Upload ``data`` (unless None) and register the object at ``key``; registration's outcome."""
        from sightline.datasets import registration

        etag = self.upload(key, data) if data is not None else None
        return registration.register_object(self.resources.data_bucket, key, etag, **kwargs)

    def register_json(self, key: str, document: object, **kwargs: Any) -> dict:
        return self.register(key, json.dumps(document).encode(), **kwargs)

    def artifact_exists(self, key: str) -> bool:
        listing = self.resources.s3.list_objects_v2(Bucket=self.resources.artifact_bucket, Prefix=key)
        return any(item["Key"] == key for item in listing.get("Contents", []))

    # Whole datasets, one upload each; every image differs from every other one the test registered.

    def _next(self) -> int:
        self._uploads += 1
        return self._uploads

    def classification(self, name: str, classes: dict[str, int] | None = None) -> dict:
        """Class folders (``<class>/<n>.png``, 5 cats and 6 dogs unless ``classes`` says otherwise) in one zip:
        the least a classifier trains on (``catalog.MIN_IMAGES_PER_CLASS``)."""
        number = self._next()
        counts = {"cat": 5, "dog": 6} if classes is None else classes
        members = {
            f"{label}/{n}.png": png(seed=number * 1000 + index * 100 + n)
            for index, (label, count) in enumerate(counts.items())
            for n in range(count)
        }
        outcome = self.register(f"datasets/{name}/upload-{number}.zip", make_zip(members))
        assert outcome["status"] == "registered", outcome
        return outcome

    def detection(self, name: str, images: int = 20) -> dict:
        """COCO annotations and the images they box, in one zip (enough that every shape is in 5 images)."""
        from sightline_local import synthetic

        number = self._next()
        outcome = self.register(f"datasets/{name}/upload-{number}.zip", synthetic.coco_zip(images, size=32, seed=number))
        assert outcome["status"] == "registered", outcome
        return outcome

    def invalid(self, name: str) -> dict:
        """A dataset whose only file is not an image it can read: ``invalid``, with that issue."""
        number = self._next()
        outcome = self.register(f"datasets/{name}/cat/unreadable-{number}.png", b"not an image")
        assert outcome["status"] == "invalid", outcome
        return outcome

    def empty(self, name: str) -> dict:
        """A dataset whose only image was deleted again: ``empty``."""
        from sightline.datasets import registration

        number = self._next()
        key = f"datasets/{name}/cat/deleted-{number}.png"
        self.register(key, png(seed=number * 1000))
        self.resources.s3.delete_object(Bucket=self.resources.data_bucket, Key=key)
        outcome = registration.unregister_object(self.resources.data_bucket, key)
        assert outcome["status"] == "removed", outcome
        return outcome


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_stack(state_dir: Path, api_key: str, **config: Any) -> Iterator[Any]:
    """A local stack on free ports for the e2e tests of one module, stopped (and moto emptied) after them."""
    from sightline_local.stack import LocalStack, StackConfig

    local = LocalStack(StackConfig(aws_port=free_port(), api_port=free_port(), api_key=api_key, state_dir=state_dir,
                                   **config)).start()
    try:
        yield local
    finally:
        local.stop()


# ---------------------------------------------------------------- the API of a running local stack


class _LastAnswer(requests.Session):
    """A requests session that keeps the last answer it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.last: requests.Response | None = None

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.last = super().request(*args, **kwargs)
        return self.last


class StackClient(SightlineClient):
    """The public client as the e2e tests use it: no retries (a 429 or an error status is what the test sees, never
    retried away, as the benchmarks count them), and ``last``, the last HTTP answer: the status and headers
    (``Location``) that a typed method does not return."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float = 120) -> None:
        self._answers = _LastAnswer()
        super().__init__(api_url, api_key, timeout=timeout, retry=RetryPolicy(attempts=1), session=self._answers)

    @property
    def last(self) -> requests.Response:
        assert self._answers.last is not None, "nothing was sent yet"
        return self._answers.last


def wait_until(read: Callable[[], T], done: Callable[[T], Any], timeout: float, interval: float = 1.0) -> T:
    """``read()`` (a typed method) every ``interval`` seconds until ``done`` holds for its answer, which is returned.
    An error answer (a 404 before a dataset registers or a version starts) counts as not yet; no answer at all is
    raised. A TimeoutError names the last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            answer = read()
        except SightlineError as error:
            if error.status is None:
                raise
            last = error
        else:
            if done(answer):
                return answer
            last = answer
        time.sleep(interval)
    raise TimeoutError(f"not reached in {timeout:.0f} s; last answer: {last}")


def get_without_key(api_url: str, path: str) -> requests.Response:
    """``GET path`` with no API key at all, which the client never sends; any status."""
    return requests.get(api_url.rstrip("/") + path, timeout=120)
