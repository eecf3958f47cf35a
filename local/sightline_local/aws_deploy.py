"""``sightline deploy``: Sightline into an AWS account, the first time and every time after.

Steps, in order (each stops the deployment when it fails, naming itself):

1. prerequisites: ``sam``, ``docker`` (with its daemon running) and the ``aws`` CLI on PATH, and AWS credentials
   (boto3 ``sts get-caller-identity``);
2. ``sam build``;
3. ``sam deploy --guided`` when samconfig.toml's profile (``--config-env``) does not yet hold the stack's
   settings (a value for every template parameter without a default: the VPC and subnets), else
   ``sam deploy --config-env <env>``;
4. the training image: ``scripts/push_training_image.py`` (ECR login, build, push, the digest, the stack
   parameter ``TrainingImageDigest``);
5. the stack's outputs;
6. the web console: ``console/`` and its ``config.json`` into the console bucket, and a CloudFront invalidation;
   then the API and console URLs and how to get a key are printed.

``--dry-run`` prints each step and its exact command and runs nothing (no process, no AWS call).
(Not to be confused with ``deploy.py``, which plays CloudFormation for the local stack inside moto.)
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sightline_local import console_site

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = {
    "sam": "the AWS SAM CLI: https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html",
    "docker": "Docker, to build the training image: https://docs.docker.com/engine/install/",
    "aws": "the AWS CLI v2 (scripts/push_training_image.py uses it): https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
}
DEFAULT_STACK = "sightline"
DEFAULT_REGION = "us-east-1"


class DeployFailed(Exception):
    """A step failed; the message names the step and says why."""


class Runner(Protocol):
    def __call__(self, command: Sequence[str], *, capture: bool = False) -> tuple[int, str]: ...


def run_process(command: Sequence[str], *, capture: bool = False) -> tuple[int, str]:
    """(exit status, output when captured): a step's command in the repository root, its terminal shared unless
    captured (``sam deploy --guided`` asks its questions there)."""
    try:
        result = subprocess.run(list(command), cwd=REPO_ROOT, text=True, check=False,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.STDOUT if capture else None)
    except FileNotFoundError:
        return 127, f"{command[0]}: not found"
    return result.returncode, result.stdout or ""


@dataclass
class Settings:
    """What samconfig.toml's profile says about the stack (``None``: not said yet)."""

    config_env: str
    stack_name: str | None
    region: str | None
    parameter_names: set[str]
    missing: list[str]  # template parameters without a default that the profile gives no value

    @property
    def guided(self) -> bool:
        return self.stack_name is None or bool(self.missing)


def read_settings(config_env: str, samconfig: Path | None = None, template: Path | None = None) -> Settings:
    """The profile ``config_env`` of samconfig.toml (its deploy and global parameters) against the template."""
    samconfig = samconfig or REPO_ROOT / "samconfig.toml"
    template = template or REPO_ROOT / "template.yaml"
    document: dict[str, Any] = {}
    if samconfig.exists():
        try:
            document = tomllib.loads(samconfig.read_text())
        except tomllib.TOMLDecodeError as error:
            raise DeployFailed(f"{samconfig} is not valid TOML: {error}") from None
    profile = document.get(config_env, {})
    merged = {**profile.get("global", {}).get("parameters", {}), **profile.get("deploy", {}).get("parameters", {})}
    overrides = merged.get("parameter_overrides", "")
    if isinstance(overrides, list):
        overrides = " ".join(str(each) for each in overrides)
    given = set(re.findall(r"(?:^|\s)([A-Za-z0-9]+)=", str(overrides)))
    required = required_parameters(template)
    return Settings(config_env=config_env, stack_name=merged.get("stack_name"), region=merged.get("region"),
                    parameter_names=given, missing=[name for name in required if name not in given])


def required_parameters(template: Path) -> list[str]:
    """The template's parameters without a default, in the template's order."""
    from samtranslator.yaml_helper import yaml_parse

    parameters = yaml_parse(template.read_text()).get("Parameters", {})
    return [name for name, spec in parameters.items() if "Default" not in spec]


@dataclass
class Step:
    name: str
    command: list[str] | None  # None: done here, in Python (``action``)
    explain: str
    action: Callable[[], None] | None = None
    interactive: bool = False


@dataclass
class Deployment:
    """The planned steps and what they need; ``run`` executes them, ``describe`` prints them."""

    settings: Settings
    runner: Runner = run_process
    which: Callable[[str], str | None] = lambda tool: shutil.which(tool)  # noqa: E731 - looked up when called
    session_factory: Callable[..., Any] | None = None  # boto3.Session, replaced in tests
    tag: str | None = None
    confirm_changeset: bool = True
    out: Callable[[str], None] = print
    samconfig: Path | None = None  # where the settings were read (REPO_ROOT/samconfig.toml)
    outputs: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- the plan
    @property
    def stack_name(self) -> str:
        return self.settings.stack_name or DEFAULT_STACK

    @property
    def region(self) -> str:
        return self.settings.region or DEFAULT_REGION

    def steps(self) -> list[Step]:
        env = ["--config-env", self.settings.config_env]
        if self.settings.guided:
            why = ("no stack name" if self.settings.stack_name is None
                   else "no value for " + ", ".join(self.settings.missing))
            deploy = Step("sam deploy (guided)", ["sam", "deploy", "--guided", *env],
                          f"samconfig.toml's [{self.settings.config_env}] profile has {why}: SAM asks for the stack "
                          "name, region and parameters (VpcId, SubnetIds) and saves the answers there",
                          interactive=True)
        else:
            extra = [] if self.confirm_changeset else ["--no-confirm-changeset"]
            deploy = Step("sam deploy", ["sam", "deploy", *env, *extra],
                          f"with samconfig.toml's [{self.settings.config_env}] profile (stack {self.stack_name}, "
                          f"region {self.region})", interactive=self.confirm_changeset)
        push = [sys.executable, "scripts/push_training_image.py", "--stack-name", self.stack_name,
                "--region", self.region, *(["--tag", self.tag] if self.tag else [])]
        return [
            Step("prerequisites", None, "sam, docker and aws on PATH (`docker info`: the daemon runs), and AWS "
                 "credentials (boto3 sts get-caller-identity)", action=self.check_prerequisites),
            Step("sam build", ["sam", "build", *env], "builds every function and the layer (functions/*/Makefile)"),
            deploy,
            Step("training image", push, "ECR login, docker build of training/Dockerfile, push, and the stack's "
                 "TrainingImageDigest parameter set to the pushed digest"),
            Step("stack outputs", None, f"reads the stack's outputs (cloudformation describe-stacks {self.stack_name})",
                 action=self.read_outputs),
            Step("web console", None, "uploads console/ and its config.json to the ConsoleBucketName output's bucket "
                 "(Cache-Control no-cache, each file's content type; files no longer in console/ are deleted), "
                 "invalidates the ConsoleDistributionId distribution, and prints the API and console URLs and how "
                 "to get a key", action=self.publish_console),
        ]

    def describe(self) -> str:
        lines = [f"sightline deploy --dry-run: the steps, in order, run in {REPO_ROOT} (nothing is run now); "
                 f"samconfig profile [{self.settings.config_env}]"]
        for number, step in enumerate(self.steps(), 1):
            lines.append(f"{number}. {step.name}: {step.explain}")
            if step.name == "prerequisites":
                lines += [f"     $ {shlex.join(['which', tool])}" for tool in TOOLS]
                lines.append(f"     $ {shlex.join(DOCKER_INFO)}")
                lines.append("     (python) boto3.client('sts').get_caller_identity()")
            elif step.command is not None:
                lines.append(f"     $ {shlex.join(step.command)}")
            elif step.name == "web console":
                lines.append(f"     (python) boto3 s3.put_object of {len(console_site.published_files())} files and "
                             "config.json; cloudfront.create_invalidation(Paths=['/*'])")
            else:
                lines.append(f"     (python) boto3.client('cloudformation', region_name={self.region!r})"
                             f".describe_stacks(StackName={self.stack_name!r})")
        if self.settings.guided:
            lines.append("(steps 4 to 6 use the stack name and region the guided deploy saves; shown here with "
                         "the defaults)")
        return "\n".join(lines)

    # ---------------------------------------------------------------- running it
    def run(self) -> None:
        steps = self.steps()
        for number, step in enumerate(steps, 1):
            self.out(f"==> step {number} of {len(steps)}: {step.name}")
            try:
                if step.action is not None:
                    step.action()
                else:
                    assert step.command is not None
                    code, output = self.runner(step.command, capture=False)
                    if code != 0:
                        raise DeployFailed(f"`{shlex.join(step.command)}` exited {code}"
                                           + (f": {output.strip().splitlines()[-1]}" if output.strip() else ""))
            except DeployFailed as error:
                raise DeployFailed(f"step {number} of {len(steps)} ({step.name}) failed: {error}. Nothing after it "
                                   "ran; fix it and run `sightline deploy` again (every step may be repeated)") from None
            if step.name.startswith("sam deploy") and self.settings.guided:
                # The guided deploy saved the stack's name and region: the steps after it (still ahead in this
                # loop, which reads the list by position) use them.
                self.settings = read_settings(self.settings.config_env, self.samconfig)
                steps[number:] = self.steps()[number:]

    def check_prerequisites(self) -> None:
        missing = [f"{tool} is not installed (or not on PATH): install {text}" for tool, text in TOOLS.items()
                   if self.which(tool) is None]
        if missing:
            raise DeployFailed("; ".join(missing))
        code, output = self.runner(DOCKER_INFO, capture=True)
        if code != 0:
            raise DeployFailed(f"docker cannot reach its daemon (`{shlex.join(DOCKER_INFO)}` exited {code}): start "
                               f"Docker. {output.strip()[:200]}")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            identity = self._client("sts").get_caller_identity()
        except (BotoCoreError, ClientError) as error:
            raise DeployFailed(f"no usable AWS credentials ({error}): run `aws configure` (or `aws sso login`), or "
                               "set AWS_PROFILE") from None
        self.out(f"    AWS account {identity['Account']} as {identity['Arn']}, region {self.region}")

    def read_outputs(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            stacks = self._client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"]
        except (BotoCoreError, ClientError) as error:
            raise DeployFailed(f"cannot read stack {self.stack_name} in {self.region}: {error}") from None
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        if "ApiUrl" not in self.outputs:
            raise DeployFailed(f"stack {self.stack_name} has no ApiUrl output: is it a Sightline stack?")

    def publish_console(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        missing = [name for name in CONSOLE_OUTPUTS if not self.outputs.get(name)]
        if missing:
            raise DeployFailed(f"stack {self.stack_name} has no {', '.join(missing)} output: deploy the current "
                               "template.yaml (it declares the console)")
        bucket, distribution = self.outputs["ConsoleBucketName"], self.outputs["ConsoleDistributionId"]
        files = console_site.published_files()
        config = {"api_base": "", "api_url": self.outputs["ConsoleUrl"], "environment": "aws"}
        try:
            s3 = self._client("s3")
            for relative, path in files.items():
                s3.put_object(Bucket=bucket, Key=relative, Body=path.read_bytes(), CacheControl="no-cache",
                              ContentType=console_site.CONTENT_TYPES[path.suffix])
            s3.put_object(Bucket=bucket, Key="config.json", Body=json.dumps(config).encode(), CacheControl="no-cache",
                          ContentType=console_site.CONTENT_TYPES[".json"])
            kept = {*files, "config.json"}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                stale = [{"Key": item["Key"]} for item in page.get("Contents", []) if item["Key"] not in kept]
                if stale:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": stale, "Quiet": True})
            self._client("cloudfront").create_invalidation(DistributionId=distribution, InvalidationBatch={
                "Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": f"sightline-deploy-{time.time_ns()}"})
        except (BotoCoreError, ClientError) as error:
            raise DeployFailed(f"cannot publish the console to s3://{bucket} (distribution {distribution}): "
                               f"{error}") from None
        self.out(f"    {len(files)} console files and config.json in s3://{bucket}; CloudFront invalidated")
        self.out(next_steps(self.outputs, self.region))

    def _client(self, service: str) -> Any:
        factory = self.session_factory
        if factory is None:
            import boto3

            factory = boto3.Session
        return factory(region_name=self.region).client(service)


DOCKER_INFO = ["docker", "info", "--format", "{{.ServerVersion}}"]
CONSOLE_OUTPUTS = ("ConsoleBucketName", "ConsoleDistributionId", "ConsoleUrl")


def next_steps(outputs: dict[str, str], region: str) -> str:
    api = outputs["ApiUrl"]
    key_id = outputs.get("ApiKeyId", "<ApiKeyId output>")
    return f"""
Sightline is deployed.

  API        {api}/v1
  console    {outputs.get('ConsoleUrl', '?')}  (type the key there once)
  data       s3://{outputs.get('DataBucketName', '?')}  (upload datasets under datasets/<name>/)

The stack's own key (the admin key) is an API Gateway key, ApiKeyId {key_id}:
  KEY=$(aws apigateway get-api-key --api-key {key_id} --include-value --region {region} --query value --output text)
  curl -H "x-api-key: $KEY" {api}/v1/datasets
Give clients scoped keys instead of it:
  sightline keys create --api-url {api} --api-key "$KEY" --name camera --scope predict
"""


# ---------------------------------------------------------------- the command


def add_parser(commands: Any) -> None:
    deploy = commands.add_parser("deploy", help="deploy Sightline to AWS (sam build, sam deploy, training image)")
    deploy.add_argument("--config-env", default="default",
                        help="samconfig.toml profile (default: default); guided the first time")
    deploy.add_argument("--tag", default=None, type=image_tag,
                        help="the training image's tag (default: build-<UTC time>; never latest)")
    deploy.add_argument("--yes", action="store_true", help="deploy the change set without asking (a profile that "
                        "has its settings only)")
    deploy.add_argument("--dry-run", action="store_true", help="print every step and its command; run nothing")


def image_tag(text: str) -> str:
    """An ECR tag the push accepts (checked before anything is built or deployed)."""
    if text == "latest" or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tag the training image may get (letters, digits, _ . -, "
                                         "up to 128, not starting with . or -, and never latest: tags are immutable)")
    return text


def run(args: argparse.Namespace, runner: Runner = run_process) -> int:
    try:
        deployment = Deployment(read_settings(args.config_env), runner=runner, tag=args.tag,
                                confirm_changeset=not args.yes)
        if args.dry_run:
            print(deployment.describe())
            return 0
        deployment.run()
    except DeployFailed as error:
        print(f"sightline deploy: {error}", file=sys.stderr)
        return 1
    return 0
