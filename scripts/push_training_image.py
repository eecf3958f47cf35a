#!/usr/bin/env python3
"""Build the training image, push it to the stack's ECR repository and deploy its digest.

    python scripts/push_training_image.py --stack-name sightline [--region us-east-1] [--tag v12]

Steps: read the stack's ``TrainingRepositoryUri`` output, log Docker in to ECR, ``docker build -f
training/Dockerfile`` from the repository root, ``docker push``, read the pushed image's digest (``docker inspect``
RepoDigests, or ``aws ecr describe-images`` when Docker lists none for this repository), then update the stack
with ``TrainingImageDigest=sha256:...`` (every other parameter keeps its value, the template stays), so the job
definition runs ``<repository>@sha256:...``: exactly the image pushed, whatever later happens to the tag. The
digest is also written to ``.sightline/training-image.json``. ``--no-deploy`` stops after recording it.

Needs docker and the aws CLI (v2) on PATH, with credentials for the stack's account.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
DIGEST_PARAMETER = "TrainingImageDigest"
TAG_PARAMETER = "TrainingImageTag"
REPOSITORY_OUTPUT = "TrainingRepositoryUri"
RECORD = Path(".sightline") / "training-image.json"


class PushFailed(Exception):
    """A step failed; the message says which and why."""


def run(command: Sequence[str], stdin: str | None = None, cwd: Path | None = None, capture: bool = True) -> str:
    """``command``'s stdout; :class:`PushFailed` naming it when it exits non-zero."""
    try:
        result = subprocess.run(list(command), input=stdin, cwd=cwd, text=True, check=False,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise PushFailed(f"{command[0]} is not installed (or not on PATH)") from None
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if capture else []
        raise PushFailed(f"`{' '.join(command[:3])} ...` exited {result.returncode}"
                         + (f": {detail[0]}" if detail else ""))
    return result.stdout or ""


def describe_stack(stack: str, region: str) -> dict:
    output = run(["aws", "cloudformation", "describe-stacks", "--stack-name", stack, "--region", region,
                  "--output", "json"])
    try:
        return json.loads(output)["Stacks"][0]
    except (ValueError, KeyError, IndexError):
        raise PushFailed(f"aws cloudformation describe-stacks gave no stack {stack!r}") from None


def repository_uri(stack: dict) -> str:
    for output in stack.get("Outputs", []):
        if output.get("OutputKey") == REPOSITORY_OUTPUT:
            return output["OutputValue"]
    raise PushFailed(f"the stack has no {REPOSITORY_OUTPUT} output: is it a Sightline stack?")


def digest_from_repo_digests(text: str, repository: str) -> str | None:
    """The digest of ``repository`` among ``docker inspect``'s RepoDigests (JSON list of ``repo@sha256:...``);
    None when the image has none for it (a daemon that does not record pushes)."""
    try:
        entries = json.loads(text.strip() or "[]")
    except ValueError:
        raise PushFailed(f"docker inspect gave no JSON list of RepoDigests: {text.strip()[:200]!r}") from None
    for entry in entries or []:
        name, _, digest = str(entry).partition("@")
        if name == repository:
            return check_digest(digest, "docker inspect")
    return None


def check_digest(digest: str, source: str) -> str:
    digest = digest.strip()
    if not DIGEST.fullmatch(digest):
        raise PushFailed(f"{source} gave {digest[:100]!r}, not a sha256:<64 hex> digest")
    return digest


def pushed_digest(image: str, repository: str, tag: str, region: str) -> str:
    found = digest_from_repo_digests(run(["docker", "inspect", "--format", "{{json .RepoDigests}}", image]),
                                     repository)
    if found:
        return found
    name = repository.split("/", 1)[1]
    return check_digest(run(["aws", "ecr", "describe-images", "--repository-name", name, "--region", region,
                             "--image-ids", f"imageTag={tag}", "--query", "imageDetails[0].imageDigest",
                             "--output", "text"]), "aws ecr describe-images")


def deploy_digest(stack: dict, region: str, digest: str, tag: str) -> bool:
    """Update the stack's digest (and tag) parameters, every other parameter and the template as they are; False
    when the stack already runs this digest."""
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
    if DIGEST_PARAMETER not in parameters:
        raise PushFailed(f"the stack has no {DIGEST_PARAMETER} parameter: deploy the current template.yaml first "
                         f"(sam deploy)")
    if parameters[DIGEST_PARAMETER] == digest and parameters.get(TAG_PARAMETER) == tag:
        return False
    arguments = []
    for key in parameters:
        if key == DIGEST_PARAMETER:
            arguments.append(f"ParameterKey={key},ParameterValue={digest}")
        elif key == TAG_PARAMETER:
            arguments.append(f"ParameterKey={key},ParameterValue={tag}")
        else:
            arguments.append(f"ParameterKey={key},UsePreviousValue=true")
    name = stack["StackName"]
    run(["aws", "cloudformation", "update-stack", "--stack-name", name, "--region", region,
         "--use-previous-template", "--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND",
         "--parameters", *arguments])
    run(["aws", "cloudformation", "wait", "stack-update-complete", "--stack-name", name, "--region", region])
    return True


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", default="sightline", help="the deployed stack (default: sightline)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--tag", default=None, help="image tag to push (default: build-<UTC time>): the repository's "
                        "tags are immutable, so each push needs a new one, and never `latest`; the digest is what "
                        "the job definition runs")
    parser.add_argument("--platform", default="linux/amd64", help="docker build --platform (Batch's GPU "
                        "instances are x86_64)")
    parser.add_argument("--no-deploy", action="store_true", help="push and record the digest, leave the stack")
    parser.add_argument("--record", type=Path, default=RECORD, help=f"where the digest is written ({RECORD})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    args.tag = args.tag or time.strftime("build-%Y%m%d-%H%M%S", time.gmtime())
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", args.tag):
        print(f"--tag {args.tag!r} is not a valid image tag", file=sys.stderr)
        return 2
    if args.tag == "latest":
        print("--tag latest is refused: the repository's tags are immutable and jobs name an image by digest or by "
              "a tag that never moves", file=sys.stderr)
        return 2
    try:
        stack = describe_stack(args.stack_name, args.region)
        repository = repository_uri(stack)
        image = f"{repository}:{args.tag}"
        password = run(["aws", "ecr", "get-login-password", "--region", args.region])
        run(["docker", "login", "--username", "AWS", "--password-stdin", repository.split("/", 1)[0]],
            stdin=password)
        print(f"building {image}", flush=True)
        run(["docker", "build", "--platform", args.platform, "-f", "training/Dockerfile", "-t", image, "."],
            cwd=ROOT, capture=False)
        run(["docker", "push", image], capture=False)
        digest = pushed_digest(image, repository, args.tag, args.region)
        record = {"repository": repository, "tag": args.tag, "digest": digest, "image": f"{repository}@{digest}",
                  "pushed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(record, indent=2) + "\n")
        print(f"pushed {record['image']} (recorded in {args.record})", flush=True)
        if args.no_deploy:
            print(f"not deployed: sam deploy --parameter-overrides {DIGEST_PARAMETER}={digest} ... uses it")
        elif deploy_digest(stack, args.region, digest, args.tag):
            print(f"stack {args.stack_name} updated: training jobs run {record['image']}")
        else:
            print(f"stack {args.stack_name} already runs {digest}")
        return 0
    except PushFailed as error:
        print(f"push_training_image: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
