"""``sightline deploy``: its plan, its dry run (which runs nothing), the order of its steps, the step a failure
names, and the API URL it prints from the stack's outputs (moto's CloudFormation)."""
from __future__ import annotations

import json
import subprocess

import boto3
import pytest
from moto import mock_aws

from sightline_local import aws_deploy
from sightline_local.cli import main

CONFIGURED = """
version = 0.1
[default.global.parameters]
stack_name = "vision"
[default.deploy.parameters]
region = "eu-west-1"
capabilities = "CAPABILITY_IAM"
parameter_overrides = "VpcId=\\"vpc-0abc\\" SubnetIds=\\"subnet-1,subnet-2\\" Stage=\\"prod\\""
"""
FIRST_TIME = """
version = 0.1
[default.deploy.parameters]
capabilities = "CAPABILITY_IAM"
"""
OUTPUTS = {"ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod", "ApiKeyId": "k3y1d",
           "DataBucketName": "vision-data-123456789012-eu-west-1"}


class FakeRunner:
    """Records each command; exits with ``fail``'s status for the first command that starts with its words."""

    def __init__(self, fail: tuple[list[str], int] | None = None, on_run=None) -> None:
        self.commands: list[list[str]] = []
        self.fail = fail
        self.on_run = on_run

    def __call__(self, command, *, capture=False):
        self.commands.append(list(command))
        if self.on_run:
            self.on_run(list(command))
        if self.fail and list(command[:len(self.fail[0])]) == self.fail[0]:
            return self.fail[1], "Error: boom at the end\n"
        return 0, "27.0.1\n" if capture else ""


def deployment(tmp_path, samconfig=CONFIGURED, runner=None, which=lambda tool: f"/usr/bin/{tool}", **kwargs):
    path = tmp_path / "samconfig.toml"
    path.write_text(samconfig)
    printed: list[str] = []
    return aws_deploy.Deployment(aws_deploy.read_settings("default", path), runner=runner or FakeRunner(),
                                 which=which, session_factory=boto3.Session, samconfig=path,
                                 out=printed.append, **kwargs), printed


def create_console(region="eu-west-1") -> dict[str, str]:
    """The console's bucket and distribution in moto; the stack outputs that name them."""
    boto3.client("s3", region_name=region).create_bucket(
        Bucket="vision-console", CreateBucketConfiguration={"LocationConstraint": region})
    distribution = boto3.client("cloudfront", region_name=region).create_distribution(DistributionConfig={
        "CallerReference": "test", "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "console", "DomainName": "vision-console.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "console", "ViewerProtocolPolicy": "https-only",
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "MinTTL": 0, "TrustedSigners": {"Enabled": False, "Quantity": 0}},
    })["Distribution"]
    return {"ConsoleBucketName": "vision-console", "ConsoleDistributionId": distribution["Id"],
            "ConsoleUrl": f"https://{distribution['DomainName']}"}


def create_stack(region="eu-west-1", name="vision", outputs=None) -> dict[str, str]:
    outputs = {**OUTPUTS, **create_console(region)} if outputs is None else outputs
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    boto3.client("cloudformation", region_name=region).create_stack(StackName=name, TemplateBody=json.dumps(template))
    return outputs


def test_settings_say_guided_until_the_profile_names_the_stack_and_every_parameter_without_a_default(tmp_path):
    first = tmp_path / "first.toml"
    first.write_text(FIRST_TIME)
    settings = aws_deploy.read_settings("default", first)
    assert settings.guided and settings.stack_name is None and settings.missing == ["VpcId", "SubnetIds"]
    configured = tmp_path / "configured.toml"
    configured.write_text(CONFIGURED)
    settings = aws_deploy.read_settings("default", configured)
    assert not settings.guided and (settings.stack_name, settings.region) == ("vision", "eu-west-1")
    assert settings.parameter_names == {"VpcId", "SubnetIds", "Stage"}
    # A profile that names the stack but lacks the subnets (the repository's own [prod]) is still guided.
    prod = aws_deploy.read_settings("prod")
    assert prod.stack_name == "sightline-prod" and prod.guided and prod.missing == ["VpcId", "SubnetIds"]
    listed = tmp_path / "listed.toml"
    listed.write_text(CONFIGURED.replace('parameter_overrides = "VpcId=\\"vpc-0abc\\" SubnetIds=\\"subnet-1,subnet-2\\" '
                                         'Stage=\\"prod\\""', 'parameter_overrides = ["VpcId=vpc-1", "SubnetIds=s-1"]'))
    assert not aws_deploy.read_settings("default", listed).guided
    broken = tmp_path / "broken.toml"
    broken.write_text("[default\n")
    with pytest.raises(aws_deploy.DeployFailed, match="broken.toml is not valid TOML"):
        aws_deploy.read_settings("default", broken)


def test_the_dry_run_prints_every_command_and_runs_no_process_and_no_aws_call(capsys, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"the dry run ran {args}")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(boto3, "client", forbidden)
    monkeypatch.setattr(boto3, "Session", forbidden)
    assert main(["deploy", "--dry-run", "--tag", "v7"]) == 0
    printed = capsys.readouterr().out
    lines = [line.strip() for line in printed.splitlines()]
    commands = [line.removeprefix("$ ") for line in lines if line.startswith("$ ")]
    assert commands[-3:-1] == ["sam build --config-env default", "sam deploy --guided --config-env default"]
    assert commands[-1].endswith("scripts/push_training_image.py --stack-name sightline --region us-east-1 --tag v7")
    assert "docker info --format '{{.ServerVersion}}'" in commands
    assert [line.split(":")[0] for line in lines if line[:2] in {f"{n}." for n in range(1, 7)}] == [
        "1. prerequisites", "2. sam build", "3. sam deploy (guided)", "4. training image", "5. stack outputs",
        "6. web console"]
    assert "no value for VpcId, SubnetIds" in printed and "describe_stacks(StackName='sightline')" in printed


def test_a_configured_profile_deploys_in_order_and_prints_the_url_from_the_stack_outputs(tmp_path):
    runner = FakeRunner()
    with mock_aws():
        create_stack()
        planned, printed = deployment(tmp_path, runner=runner, tag="v2", confirm_changeset=False)
        planned.run()
    assert [command[:2] for command in runner.commands] == [
        ["docker", "info"], ["sam", "build"], ["sam", "deploy"], [runner.commands[3][0], "scripts/push_training_image.py"]]
    assert runner.commands[2] == ["sam", "deploy", "--config-env", "default", "--no-confirm-changeset"]
    assert runner.commands[3][2:] == ["--stack-name", "vision", "--region", "eu-west-1", "--tag", "v2"]
    text = "\n".join(printed)
    assert f"API        {OUTPUTS['ApiUrl']}/v1" in text
    assert "aws apigateway get-api-key --api-key k3y1d --include-value --region eu-west-1" in text
    assert f"sightline keys create --api-url {OUTPUTS['ApiUrl']}" in text
    assert "AWS account 123456789012" in text
    assert "console    https://" in text


def test_the_console_is_published_with_its_types_and_config_and_stale_files_go(tmp_path, monkeypatch):
    site = tmp_path / "console"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html>")
    (site / "js" / "app.js").write_text("export {};")
    (site / ".hidden.js").write_text("secret")
    (site / "notes.md").write_text("not served")
    monkeypatch.setattr(aws_deploy.console_site, "CONSOLE_DIR", site)
    monkeypatch.setattr(aws_deploy.console_site.published_files, "__defaults__", (site,))
    with mock_aws():
        outputs = create_stack()
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.put_object(Bucket="vision-console", Key="js/removed.js", Body=b"old")
        planned, printed = deployment(tmp_path)
        planned.run()
        stored = {item["Key"] for item in s3.list_objects_v2(Bucket="vision-console")["Contents"]}
        assert stored == {"index.html", "js/app.js", "config.json"}
        script = s3.get_object(Bucket="vision-console", Key="js/app.js")
        assert (script["ContentType"], script["CacheControl"]) == ("text/javascript; charset=utf-8", "no-cache")
        config = json.loads(s3.get_object(Bucket="vision-console", Key="config.json")["Body"].read())
        assert config == {"api_base": "", "api_url": outputs["ConsoleUrl"], "environment": "aws"}
        invalidations = boto3.client("cloudfront").list_invalidations(
            DistributionId=outputs["ConsoleDistributionId"])["InvalidationList"]
        assert invalidations["Quantity"] == 1
    assert "2 console files and config.json in s3://vision-console" in "\n".join(printed)


def test_a_stack_without_the_console_outputs_fails_the_console_step_by_name(tmp_path):
    with mock_aws():
        create_stack(outputs=OUTPUTS)
        planned, _ = deployment(tmp_path)
        with pytest.raises(aws_deploy.DeployFailed, match=r"step 6 of 6 \(web console\) failed: stack vision has no "
                                                          "ConsoleBucketName, ConsoleDistributionId, ConsoleUrl output"):
            planned.run()


@pytest.mark.parametrize(("failing", "number", "name"), [
    (["sam", "build"], 2, "sam build"),
    (["sam", "deploy"], 3, "sam deploy"),
])
def test_a_failing_step_stops_the_deployment_and_names_itself(tmp_path, failing, number, name):
    runner = FakeRunner(fail=(failing, 2))
    with mock_aws():
        planned, _ = deployment(tmp_path, runner=runner)
        with pytest.raises(aws_deploy.DeployFailed) as failed:
            planned.run()
    message = str(failed.value)
    assert message.startswith(f"step {number} of 6 ({name}) failed: `{' '.join(failing)}")
    assert "exited 2" in message and "run `sightline deploy` again" in message
    assert runner.commands[-1][:2] == failing  # nothing after it ran


def test_missing_tools_a_stopped_daemon_and_missing_credentials_fail_the_first_step(tmp_path, monkeypatch):
    with mock_aws():
        planned, _ = deployment(tmp_path, which=lambda tool: None if tool in ("docker", "sam") else "/bin/x")
        with pytest.raises(aws_deploy.DeployFailed, match=r"step 1 of 6 \(prerequisites\) failed: sam is not "
                                                          r"installed .*; docker is not installed"):
            planned.run()
        runner = FakeRunner(fail=(["docker", "info"], 1))
        planned, _ = deployment(tmp_path, runner=runner)
        with pytest.raises(aws_deploy.DeployFailed, match="docker cannot reach its daemon"):
            planned.run()
        assert len(runner.commands) == 1
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    runner = FakeRunner()
    planned, _ = deployment(tmp_path, runner=runner)
    with pytest.raises(aws_deploy.DeployFailed, match="no usable AWS credentials .*aws configure"):
        planned.run()
    assert runner.commands == [aws_deploy.DOCKER_INFO]


def test_after_a_guided_deploy_the_later_steps_use_the_stack_it_saved(tmp_path):
    samconfig = tmp_path / "samconfig.toml"

    def guided_saves(command):
        if command[:3] == ["sam", "deploy", "--guided"]:
            samconfig.write_text(CONFIGURED)  # what SAM writes after its questions

    runner = FakeRunner(on_run=guided_saves)
    with mock_aws():
        create_stack()
        planned, printed = deployment(tmp_path, samconfig=FIRST_TIME, runner=runner)
        planned.run()
    assert runner.commands[2] == ["sam", "deploy", "--guided", "--config-env", "default"]
    assert runner.commands[3][2:6] == ["--stack-name", "vision", "--region", "eu-west-1"]
    assert OUTPUTS["ApiUrl"] in "\n".join(printed)


def test_a_stack_without_the_api_url_output_or_no_stack_at_all_fails_the_outputs_step(tmp_path):
    with mock_aws():
        planned, _ = deployment(tmp_path)
        with pytest.raises(aws_deploy.DeployFailed, match=r"step 5 of 6 \(stack outputs\) failed: cannot read stack "
                                                          "vision in eu-west-1"):
            planned.run()
        create_stack(outputs={"Other": "x"})
        with pytest.raises(aws_deploy.DeployFailed, match="has no ApiUrl output"):
            planned.run()


def test_the_command_prints_the_failure_on_one_line_and_exits_1(tmp_path, capsys, monkeypatch):
    runner = FakeRunner(fail=(["docker", "info"], 1))
    monkeypatch.setattr(aws_deploy.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    import argparse

    args = argparse.Namespace(config_env="default", tag=None, yes=False, dry_run=False)
    assert aws_deploy.run(args, runner=runner) == 1
    error = capsys.readouterr().err
    assert error.startswith("sightline deploy: step 1 of 6 (prerequisites) failed: docker cannot reach its daemon")
    assert error.count("\n") == 1


@pytest.mark.parametrize("tag", ["latest", "-bad", "a" * 129, "with space"])
def test_a_tag_the_push_would_refuse_is_refused_before_anything_runs(tag, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "--dry-run", f"--tag={tag}"])
    assert exited.value.code == 2 and "is not a tag the training image may get" in capsys.readouterr().err
