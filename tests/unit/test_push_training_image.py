"""scripts/push_training_image.py against fake docker and aws commands on PATH (no Docker or AWS here)."""
from __future__ import annotations

import json
import re
import os
import stat
from pathlib import Path

import pytest

from support import load_module

ROOT = Path(__file__).resolve().parents[2]
push = load_module(ROOT / "scripts" / "push_training_image.py")

REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sightline-training"
DIGEST = "sha256:" + "ab12" * 16
STACK = {"Stacks": [{
    "StackName": "sightline",
    "Outputs": [{"OutputKey": "TrainingRepositoryUri", "OutputValue": REPOSITORY}],
    "Parameters": [{"ParameterKey": "VpcId", "ParameterValue": "vpc-1"},
                   {"ParameterKey": "TrainingImageTag", "ParameterValue": "v11"},
                   {"ParameterKey": "TrainingImageDigest", "ParameterValue": ""}],
}]}

# Each fake logs its arguments (one line per call) and answers what the script reads from it.
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $*" in
  "docker inspect"*) printf '%s\\n' "$FAKE_REPO_DIGESTS" ;;
  "docker login"*) cat > /dev/null ;;
  "aws cloudformation describe-stacks"*) cat "$FAKE_STACK" ;;
  "aws ecr get-login-password"*) echo secret ;;
  "aws ecr describe-images"*) printf '%s\\n' "$FAKE_ECR_DIGEST" ;;
esac
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "aws"):
        path = bin_dir / name
        path.write_text(FAKE)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "stack.json").write_text(json.dumps(STACK))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("FAKE_STACK", str(tmp_path / "stack.json"))
    monkeypatch.setenv("FAKE_REPO_DIGESTS", json.dumps([f"other.example/x@sha256:{'0' * 64}",
                                                         f"{REPOSITORY}@{DIGEST}"]))
    monkeypatch.setenv("FAKE_ECR_DIGEST", "None")
    return tmp_path


def calls(root: Path) -> list[str]:
    return (root / "calls.log").read_text().splitlines()


def test_it_builds_pushes_records_and_deploys_the_digest(fakes, capsys):
    record = fakes / "record.json"
    assert push.main(["--stack-name", "sightline", "--tag", "v12", "--record", str(record)]) == 0

    log = calls(fakes)
    assert log[:3] == ["aws cloudformation describe-stacks --stack-name sightline --region us-east-1 --output json",
                       "aws ecr get-login-password --region us-east-1",
                       "docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com"]
    assert log[3] == f"docker build --platform linux/amd64 -f training/Dockerfile -t {REPOSITORY}:v12 ."
    assert log[4] == f"docker push {REPOSITORY}:v12"
    assert log[5] == f"docker inspect --format {{{{json .RepoDigests}}}} {REPOSITORY}:v12"
    # The digest becomes the stack's parameter; every other one keeps its value, the template stays.
    assert log[6] == ("aws cloudformation update-stack --stack-name sightline --region us-east-1 "
                      "--use-previous-template --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --parameters "
                      "ParameterKey=VpcId,UsePreviousValue=true ParameterKey=TrainingImageTag,ParameterValue=v12 "
                      f"ParameterKey=TrainingImageDigest,ParameterValue={DIGEST}")
    assert log[7].startswith("aws cloudformation wait stack-update-complete --stack-name sightline")
    saved = json.loads(record.read_text())
    assert (saved["digest"], saved["image"], saved["tag"]) == (DIGEST, f"{REPOSITORY}@{DIGEST}", "v12")
    assert f"{REPOSITORY}@{DIGEST}" in capsys.readouterr().out


def test_without_repo_digests_it_asks_ecr_and_no_deploy_leaves_the_stack(fakes, monkeypatch):
    monkeypatch.setenv("FAKE_REPO_DIGESTS", "[]")
    monkeypatch.setenv("FAKE_ECR_DIGEST", DIGEST)
    assert push.main(["--no-deploy", "--record", str(fakes / "record.json")]) == 0
    log = calls(fakes)
    # Without --tag, a new tag per push (the repository's tags are immutable): build-<UTC time>.
    assert re.fullmatch(r"aws ecr describe-images --repository-name sightline-training --region us-east-1 --image-ids "
                        r"imageTag=build-\d{8}-\d{6} --query imageDetails\[0\]\.imageDigest --output text", log[-1])
    assert not any("update-stack" in line for line in log)
    assert json.loads((fakes / "record.json").read_text())["digest"] == DIGEST


def test_a_stack_already_on_the_digest_is_not_updated(fakes):
    stack = json.loads(json.dumps(STACK))
    stack["Stacks"][0]["Parameters"][2]["ParameterValue"] = DIGEST
    (fakes / "stack.json").write_text(json.dumps(stack))
    assert push.main(["--tag", "v11", "--record", str(fakes / "record.json")]) == 0
    assert not any("update-stack" in line for line in calls(fakes))


@pytest.mark.parametrize("repo_digests, ecr, message", [
    ("[]", "None", "aws ecr describe-images gave 'None', not a sha256:<64 hex> digest"),
    (json.dumps([f"{REPOSITORY}@sha256:short"]), "None", "docker inspect gave 'sha256:short'"),
    ("not json", "None", "docker inspect gave no JSON list"),
])
def test_a_digest_that_is_not_one_fails_before_deploying(fakes, monkeypatch, capsys, repo_digests, ecr, message):
    monkeypatch.setenv("FAKE_REPO_DIGESTS", repo_digests)
    monkeypatch.setenv("FAKE_ECR_DIGEST", ecr)
    assert push.main(["--record", str(fakes / "record.json")]) == 1
    assert message in capsys.readouterr().err
    assert not any("update-stack" in line for line in calls(fakes))
    assert not (fakes / "record.json").exists()


def test_arguments_are_checked_and_a_failing_step_is_named(fakes, monkeypatch, capsys):
    assert push.main(["--tag", "bad tag"]) == 2
    assert "not a valid image tag" in capsys.readouterr().err
    assert push.main(["--tag", "latest"]) == 2  # immutable tags: latest would be pushed once, then refused
    assert "latest is refused" in capsys.readouterr().err
    (fakes / "bin" / "docker").write_text("#!/bin/sh\necho 'no daemon' >&2\nexit 3\n")
    assert push.main(["--record", str(fakes / "record.json")]) == 1
    assert "`docker login --username ...` exited 3: no daemon" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(fakes / "empty"))
    assert push.main([]) == 1
    assert "aws is not installed" in capsys.readouterr().err
