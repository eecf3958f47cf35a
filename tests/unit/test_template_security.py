"""The template's hardening: checkov passes with the checked-in skip list, and least privilege stays least."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from samtranslator.yaml_helper import yaml_parse

from support import load_module

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]
checkov_template = load_module(ROOT / "scripts" / "checkov_template.py")
ARTIFACTS = "${AWS::StackName}-artifacts-${AWS::AccountId}-${AWS::Region}"


def _statements(policies: list) -> list[dict]:
    found = []
    for policy in policies:
        document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else {}
        found += document.get("Statement", [])
    return found


def _resources(statement: dict) -> list[str]:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else str(r) for r in resources]


def _actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_checkov_finds_nothing_outside_the_skip_list():
    if not (Path(sys.executable).parent / "checkov").exists():
        pytest.fail("checkov is not installed: make install (requirements-lint.txt)")
    found = checkov_template.findings(ROOT / "template.yaml")
    new, _stale = checkov_template.unexplained(found, checkov_template.load_skips())
    assert not new, "\n".join(f"{f.check} {f.resource}: {f.name}" for f in new)


def test_a_finding_outside_the_skip_list_is_new_and_an_unused_skip_is_stale():
    finding = checkov_template.Finding("CKV_AWS_18", "DataBucket", "access logging")
    skips = [{"check": "CKV_AWS_18", "resources": ["AccessLogBucket"], "reason": "r"},
             {"check": "CKV_AWS_1", "reason": "r"}]
    new, stale = checkov_template.unexplained([finding], skips)
    assert new == [finding] and stale == skips


def test_every_skip_gives_a_reason():
    assert all(str(skip["reason"]).strip() for skip in checkov_template.load_skips())


@pytest.mark.parametrize("name", ["RegisterDatasetFunction", "PrepareTrainingFunction", "RecordModelVersionFunction",
                                  "PredictFunction"])
def test_functions_touch_the_artifact_bucket_only_under_their_prefixes(name):
    policies = RESOURCES[name]["Properties"]["Policies"]
    assert not any(isinstance(p, dict) and ({"S3CrudPolicy", "S3ReadPolicy", "S3WritePolicy"} & set(p))
                   for p in policies)
    for statement in _statements(policies):
        for resource in _resources(statement):
            if ARTIFACTS in resource and not resource.endswith(ARTIFACTS):  # object ARNs: under a prefix
                assert not resource.endswith(f"{ARTIFACTS}/*"), (name, resource)
            assert not any(a in ("s3:*", "s3:PutBucketAcl", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration")
                           for a in _actions(statement)), (name, statement)


def test_only_the_register_function_deletes_registered_images():
    deleters = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"
                for s in _statements(r["Properties"].get("Policies", []))
                if "s3:DeleteObject" in _actions(s) and any("/images/*" in x for x in _resources(s))}
    assert deleters == {"RegisterDatasetFunction"}


def test_the_training_job_role_writes_only_models_and_checkpoints():
    statements = _statements(RESOURCES["TrainingJobRole"]["Properties"]["Policies"])
    written = {x.removeprefix(f"arn:${{AWS::Partition}}:s3:::{ARTIFACTS}")
               for s in statements if "s3:PutObject" in _actions(s) for x in _resources(s)}
    assert written == {"/models/*", "/checkpoints/*"}
    assert not any(a.startswith("s3:Delete") for s in statements for a in _actions(s))


@pytest.mark.parametrize("bucket", ["DataBucket", "ArtifactBucket", "AccessLogBucket"])
def test_buckets_refuse_plain_http_and_are_versioned(bucket):
    policy = next(r["Properties"] for r in RESOURCES.values()
                  if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket})
    deny = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    properties = RESOURCES[bucket]["Properties"]
    assert properties["VersioningConfiguration"]["Status"] == "Enabled"
    assert any("NoncurrentVersionExpiration" in rule for rule in properties["LifecycleConfiguration"]["Rules"])
    if bucket != "AccessLogBucket":
        assert properties["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}


def test_training_instances_require_imdsv2_with_one_hop_and_encrypted_volumes():
    data = RESOURCES["TrainingLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert all(mapping["Ebs"]["Encrypted"] for mapping in data["BlockDeviceMappings"])
    for name in ("TrainingSpotComputeEnvironment", "TrainingOnDemandComputeEnvironment"):
        resources = RESOURCES[name]["Properties"]["ComputeResources"]
        assert resources["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "TrainingLaunchTemplate"}
        assert resources["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    egress = RESOURCES["TrainingSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in egress] == [("tcp", 443, 443)]


def test_images_are_immutable_and_never_latest():
    assert RESOURCES["TrainingRepository"]["Properties"]["ImageTagMutability"] == "IMMUTABLE"
    tag = TEMPLATE["Parameters"]["TrainingImageTag"]
    assert tag["Default"] != "latest"
    import re
    assert not re.fullmatch(tag["AllowedPattern"], "latest") and re.fullmatch(tag["AllowedPattern"], "v12")


def test_interface_endpoints_are_opt_in():
    endpoints = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::EC2::VPCEndpoint"}
    assert endpoints and all("Condition" in r for r in endpoints.values())
    assert TEMPLATE["Parameters"]["TrainingInterfaceEndpoints"]["Default"] == "false"


def test_every_log_group_has_a_retention_and_every_function_logs_to_one():
    groups = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert all("RetentionInDays" in RESOURCES[name]["Properties"] for name in groups)
    for name in ("RegisterDatasetFunction", "ApiFunction", "PredictFunction", "PrepareTrainingFunction",
                 "RecordModelVersionFunction", "TrainingReconcilerFunction"):
        assert RESOURCES[name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] in groups
    for machine in ("TrainingStateMachine", "BatchPredictionStateMachine"):
        assert RESOURCES[machine]["Properties"]["Logging"]["Level"] in ("ERROR", "ALL")


def test_every_alarm_publishes_to_the_alarm_topic():
    alarms = {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"FunctionErrorsAlarm", "TrainingFailuresAlarm", "DatasetEventsDeadLetterAlarm"} <= set(alarms)
    assert all(alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] for alarm in alarms.values())
    assert RESOURCES["SightlineTable"]["Properties"]["DeletionProtectionEnabled"] is True
