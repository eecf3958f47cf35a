"""The embedded local stack: moto as the AWS endpoint, the real template deployed into it, the real handlers
in warm worker processes, training jobs as local processes, and an API Gateway front."""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shlex
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from sightline_local import moto_patches, snapshot
from sightline_local.apigateway import ApiFront
from sightline_local.batch_runner import LocalJobRunner
from sightline_local.deploy import ACCOUNT_ID, DeployedStack, Deployer
from sightline_local.lambda_runtime import LambdaRuntime
from sightline_local.sqs_poller import SqsPoller
from sightline_local.template import load_template

log = logging.getLogger("sightline.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sightline-local", "AWS_SECRET_ACCESS_KEY": "sightline-local"}


@dataclass
class StackConfig:
    root: Path = REPO_ROOT
    host: str = "127.0.0.1"
    aws_port: int = 4566
    api_port: int = 3000
    stack_name: str = "sightline"
    region: str = "us-east-1"
    api_key: str | None = None
    state_dir: Path | None = None
    # Template parameters to deploy with, e.g. {"AuthorizerCacheSeconds": "2"} (tests of revocation).
    parameters: dict[str, str] = field(default_factory=dict)
    # The state dir's snapshot (buckets and table) is restored at start and written at stop and, after changes,
    # every snapshot_seconds (0: only at stop). fresh: set the snapshot aside and start empty.
    persist: bool = True
    fresh: bool = False
    snapshot_seconds: float = 30.0

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"


def training_command(dockerfile: Path) -> list[str]:
    """The container's ENTRYPOINT (and CMD), run with this interpreter instead of the image's."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for line in dockerfile.read_text().splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() in ("ENTRYPOINT", "CMD"):
            parsed = json.loads(rest) if rest.strip().startswith("[") else shlex.split(rest)
            if word.upper() == "ENTRYPOINT":
                entrypoint = parsed
            else:
                cmd = parsed
    command = entrypoint + cmd
    if not command:
        raise ValueError(f"{dockerfile} has no ENTRYPOINT or CMD")
    if Path(command[0]).name.startswith("python"):
        command[0] = sys.executable
    return command


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir or (config.root / ".sightline")
        # SnapshotError (unreadable) and SnapshotFormatError (another format) go to the caller, before anything runs.
        self._saved = snapshot.load(self.state_dir) if config.persist and not config.fresh else None
        saved_key = (self._saved or {}).get("stack_key")
        # The stack's key survives a restart; a key asked for explicitly still wins.
        self.api_key = config.api_key or os.environ.get("SIGHTLINE_API_KEY") or saved_key or secrets.token_urlsafe(24)
        if len(self.api_key) < 20 or len(self.api_key) > 128:
            # API Gateway's own rule for API key values; moto enforces it too.
            raise ValueError("SIGHTLINE_API_KEY must be 20 to 128 characters long")
        self.deployed: DeployedStack | None = None
        self._moto: Any = None
        self._api_server: Any = None
        self._runtime: LambdaRuntime | None = None
        self._job_runner: LocalJobRunner | None = None
        self._sqs_poller: SqsPoller | None = None
        self._valid_keys_cache: tuple[float, set[str]] = (0.0, set())  # (fetched at, enabled API key values)
        self.discarded: Path | None = None  # where --fresh set the previous snapshot aside
        self.restored: snapshot.Summary | None = None  # what was restored at start
        self.last_snapshot: snapshot.Summary | None = None  # the latest snapshot written
        self._writer: snapshot.SnapshotWriter | None = None
        self._changes: ChangeCounter | None = None
        self._snapshot_stop = threading.Event()
        self._snapshot_thread: threading.Thread | None = None
        self._written_changes = 0  # the change count the latest snapshot saw

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "LocalStack":
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        config = self.config
        # Process-wide settings of moto, put back by stop() (tests with moto's mocks may run in this process after).
        self._saved_process_state = (os.environ.get("MOTO_PORT"),
                                     default_user_config["stepfunctions"].get("execute_state_machine"))
        # Step Functions' service integrations call back into moto on MOTO_PORT.
        os.environ["MOTO_PORT"] = str(config.aws_port)
        os.environ.setdefault("AWS_DEFAULT_REGION", config.region)
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        # Lambda and Batch keep moto's full backends (not the "simple" ones that echo and skip work);
        # moto_patches replaces only the Docker-based execution inside them.

        base_env = self._process_environment()
        self._runtime = LambdaRuntime(base_env)
        command = training_command(config.root / "training" / "Dockerfile")
        self._job_runner = job_runner = LocalJobRunner(
            command=command,
            # The training image has an ENTRYPOINT and no CMD: a job definition's Command (the evaluation's
            # ``evaluate``) follows it.
            entrypoint=command,
            base_env={**os.environ, **base_env, "SIGHTLINE_CACHE_DIR": str(self.state_dir / "cache")},
            log_dir=self.state_dir / "logs" / "batch",
            workdir=config.root,
        )
        moto_patches.install(self._runtime, job_runner, self._start_execution)

        if config.fresh and config.persist:
            self.discarded = snapshot.discard(self.state_dir)
        self._moto = ThreadedMotoServer(ip_address=config.host, port=config.aws_port, verbose=False)
        self._moto.start()
        self._wait_for_moto()
        self._changes = ChangeCounter.wrap(self._moto._server)

        parameters = {**self._network_parameters(), **config.parameters}
        template = load_template(config.root / "template.yaml", parameters, deployment_bucket=f"{config.stack_name}-local-deployments")
        deployer = Deployer(config.endpoint, config.region, config.stack_name, f"{config.stack_name}-local-deployments", LOCAL_CREDENTIALS)
        self.deployed = deployer.deploy(template, parameters, self.api_key)
        if config.persist:
            # Before any function, queue poller or API route runs: nothing restored is seen as new.
            self._restore_snapshot()
        for spec in self.deployed.functions.values():
            self._runtime.register(spec)
        self._sqs_poller = SqsPoller(self.client("sqs"), self._runtime.invoke, config.region)
        for source in self.deployed.sqs_event_sources:
            self._sqs_poller.add(source)

        stage = str(parameters.get("Stage") or template.parameters.get("Stage", {}).get("Default", "prod"))
        api_logical_id, body = next(iter(self.deployed.rest_apis.items()))
        front = ApiFront(body, self._runtime, self._is_valid_api_key, stage, api_id=self.deployed.api_ids[api_logical_id],
                         region=config.region, method_settings=self.deployed.method_settings,
                         usage_plan=self.deployed.usage_plan)
        self._api_server = front.serve(config.host, config.api_port)
        threading.Thread(target=self._api_server.serve_forever, name="api-front", daemon=True).start()
        if self._writer is not None and config.snapshot_seconds > 0:
            self._snapshot_thread = threading.Thread(target=self._snapshot_periodically, name="snapshots", daemon=True)
            self._snapshot_thread.start()
        return self

    def stop(self) -> None:
        self._snapshot_stop.set()
        if self._snapshot_thread is not None:
            self._snapshot_thread.join()
        if self._api_server is not None:
            self._api_server.shutdown()
            self._api_server.server_close()
        if self._sqs_poller is not None:
            self._sqs_poller.shutdown()
        if self._job_runner is not None:
            self._job_runner.shutdown()
        if self._runtime is not None:
            self._runtime.shutdown()
        if self._writer is not None and self._moto is not None:
            self.write_snapshot()  # everything that could change the state has stopped
        if self._moto is not None:
            # moto's backends are global to the process: empty them, so a stack started after this one (the e2e
            # test files, one after the other) deploys into an empty account as this one did.
            try:
                urllib.request.urlopen(urllib.request.Request(f"{self.config.endpoint}/moto-api/reset", method="POST"),
                                       timeout=30).read()
            except OSError as error:
                log.warning("moto's state was not reset: %s", error)
            self._moto.stop()
        self._restore_process_state()

    def _restore_process_state(self) -> None:
        saved = getattr(self, "_saved_process_state", None)
        if saved is None:
            return
        from moto.core.config import default_user_config

        port, execute = saved
        if port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = port
        default_user_config["stepfunctions"]["execute_state_machine"] = execute
        self._saved_process_state = None

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------ snapshots
    def _restore_snapshot(self) -> None:
        """Restore the state dir's snapshot (if any) into the deployed stack, and get ready to write the next."""
        assert self.deployed is not None
        buckets = self._resources_of("AWS::S3::Bucket")
        tables = self._resources_of("AWS::DynamoDB::Table")
        if self._saved is not None:
            plans = list(self._resources_of("AWS::ApiGateway::UsagePlan").values())
            self.restored = snapshot.restore(
                self.state_dir, self._saved, account_id=ACCOUNT_ID, buckets=buckets, tables=tables,
                dynamodb=self.client("dynamodb"), apigateway=self.client("apigateway"),
                usage_plan_id=plans[0] if plans else None)
            self._saved = None  # the stack holds it now
            log.info("restored the snapshot of %s in %.1f s: %s", self.restored.written_at, self.restored.seconds,
                     self.restored.describe())
            for note in self.restored.notes:
                log.info("restored: %s", note)
        self._writer = snapshot.SnapshotWriter(self.state_dir, ACCOUNT_ID, buckets, tables, self.client("dynamodb"),
                                               self.api_key)

    def _resources_of(self, resource_type: str) -> dict[str, str]:
        """Logical id -> physical name of the deployed resources of one type."""
        assert self.deployed is not None
        return {logical_id: physical.ref for logical_id, physical in self.deployed.resources.items()
                if self.deployed.template.resources[logical_id]["Type"] == resource_type}

    def write_snapshot(self) -> snapshot.Summary | None:
        """Write the snapshot now (the stack keeps running); None (and a logged error) when it failed, in which
        case the previous snapshot is still whole."""
        if self._writer is None:
            return None
        changes = self._changes.count if self._changes is not None else 0
        try:
            summary = self._writer.write()
        except Exception:  # noqa: BLE001 - the stack outlives a snapshot that could not be written
            log.exception("the snapshot could not be written to %s; the previous one is kept",
                          snapshot.snapshot_dir(self.state_dir))
            return None
        self._written_changes = changes
        self.last_snapshot = summary
        log.info("snapshot written in %.1f s (%d new bodies): %s", summary.seconds, summary.new_blobs,
                 summary.describe())
        return summary

    def _snapshot_periodically(self) -> None:
        """After changes, a snapshot every ``snapshot_seconds``, or ten times as long as the last one took (a big
        table's scan must not take more than a tenth of the stack's time)."""
        wait = self.config.snapshot_seconds
        while not self._snapshot_stop.wait(wait):
            if self._changes is not None and self._changes.count != self._written_changes:
                written = self.write_snapshot()
                if written is not None:
                    wait = max(self.config.snapshot_seconds, 10 * written.seconds)

    # ------------------------------------------------------------ helpers
    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.config.endpoint,
            region_name=self.config.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def output(self, name: str) -> str:
        assert self.deployed is not None
        return self.deployed.outputs[name]

    def warm(self) -> None:
        """Start every function's first worker (imports are the slow part of a cold start)."""
        assert self._runtime is not None
        self._runtime.warm()

    def _process_environment(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(LOCAL_CREDENTIALS)
        env.update(
            AWS_ENDPOINT_URL=self.config.endpoint,
            AWS_DEFAULT_REGION=self.config.region,
            AWS_REGION=self.config.region,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def _wait_for_moto(self) -> None:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.config.endpoint}/moto-api/", timeout=1)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        raise RuntimeError(f"moto did not start on {self.config.endpoint}")

    def _network_parameters(self) -> dict[str, Any]:
        """The VPC and subnet the template's Batch compute environments ask for."""
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
        return {"VpcId": vpc, "SubnetIds": subnet}

    def _is_valid_api_key(self, value: str) -> bool:
        """Whether ``value`` is an enabled API key; a key unknown to the cache is looked up again, so one made a
        moment ago (a scoped key's usage key) works at once, as on AWS."""
        fetched_at, keys = self._valid_keys_cache
        if value in keys and time.time() - fetched_at <= 5:
            return True
        if time.time() - fetched_at > 0.2:
            items = self.client("apigateway").get_api_keys(includeValues=True)["items"]
            keys = {item["value"] for item in items if item.get("enabled")}
            self._valid_keys_cache = (time.time(), keys)
        return value in keys

    def _start_execution(self, state_machine_arn: str, payload: str) -> None:
        self.client("stepfunctions").start_execution(stateMachineArn=state_machine_arn, input=payload)


# DynamoDB operations that change nothing (X-Amz-Target DynamoDB_20120810.<operation>).
_DYNAMODB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable", "ListTables",
                             "DescribeTimeToLive", "ListTagsOfResource", "DescribeContinuousBackups",
                             "DescribeEndpoints", "TransactGetItems"})
_SERVICE_IN_SCOPE = re.compile(r"Credential=[^/,&\s]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")


class ChangeCounter:
    """Counts the requests to moto that may change what a snapshot holds (S3 writes, DynamoDB writes), so the
    periodic snapshot is written only after something changed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0

    @classmethod
    def wrap(cls, server: Any) -> "ChangeCounter":
        """Put a counter in front of a running werkzeug server's application."""
        counter = cls(server.app)
        server.app = counter
        return counter

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if changes_state(environ):
            self.count += 1
        return self.app(environ, start_response)


def changes_state(environ: dict) -> bool:
    """Whether a request to moto may change the buckets or the table."""
    if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD", "OPTIONS"):
        return False
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.startswith("DynamoDB_") and target.rsplit(".", 1)[-1] not in _DYNAMODB_READS
    credential = environ.get("HTTP_AUTHORIZATION", "") or urllib.parse.unquote(environ.get("QUERY_STRING", ""))
    scope = _SERVICE_IN_SCOPE.search(credential.replace("X-Amz-Credential=", "Credential="))
    return scope is not None and scope.group(1) == "s3"
