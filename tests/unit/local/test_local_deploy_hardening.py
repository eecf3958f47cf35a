"""The local stack deploys the template's hardening resources into moto: bucket policies, log groups, launch
templates, metric-math alarms, opt-in VPC endpoints."""
from __future__ import annotations

import json

import pytest
from moto import mock_aws

from sightline_local.deploy import Deployer

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}


@pytest.fixture
def deployer():
    with mock_aws():
        yield Deployer(None, "us-east-1", "s", "deployments", CREDENTIALS)


def test_a_bucket_policy_is_applied_without_the_plain_http_deny(deployer):
    s3 = deployer.client("s3")
    deployer._bucket("AccessLogBucket", {"BucketName": "access-logs"})
    deny = {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::access-logs/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    allow = {"Sid": "S3ServerAccessLogs", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": "arn:aws:s3:::access-logs/*"}
    deployer._bucket_policy("LogsPolicy", {"Bucket": "access-logs", "PolicyDocument": {"Version": "2012-10-17",
                                                                               "Statement": [deny, allow]}})
    applied = json.loads(s3.get_bucket_policy(Bucket="access-logs")["Policy"])
    assert [s["Sid"] for s in applied["Statement"]] == ["S3ServerAccessLogs"]
    s3.put_object(Bucket="access-logs", Key="a", Body=b"x")  # the local endpoint is plain HTTP and still works


def test_log_groups_keep_their_retention(deployer):
    physical = deployer._log_group("MachineLogGroup", {"LogGroupName": "/aws/vendedlogs/states/s-train",
                                                       "RetentionInDays": 365})
    groups = deployer.client("logs").describe_log_groups(logGroupNamePrefix="/aws/vendedlogs/")["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in groups] == [("/aws/vendedlogs/states/s-train", 365)]
    assert physical.attributes["Arn"].endswith(":log-group:/aws/vendedlogs/states/s-train:*")


def test_a_launch_template_is_created_with_its_metadata_options(deployer):
    physical = deployer._launch_template("TrainingLaunchTemplate", {"LaunchTemplateData": {
        "MetadataOptions": {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}}})
    versions = deployer.client("ec2").describe_launch_template_versions(LaunchTemplateId=physical.ref)
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert physical.attributes["LatestVersionNumber"] == "1"


def test_a_metric_math_alarm_is_created(deployer):
    metrics = [{"Id": "total", "Expression": "SUM([e0])", "ReturnData": True},
               {"Id": "e0", "ReturnData": False, "MetricStat": {"Metric": {
                   "Namespace": "AWS/Lambda", "MetricName": "Errors",
                   "Dimensions": [{"Name": "FunctionName", "Value": "f"}]}, "Period": 300, "Stat": "Sum"}}]
    name = deployer._alarm("FunctionErrorsAlarm", {"EvaluationPeriods": 1, "Threshold": 0,
                                                    "ComparisonOperator": "GreaterThanThreshold",
                                                    "Metrics": metrics}).ref
    alarm = deployer.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert [m["Id"] for m in alarm["Metrics"]] == ["total", "e0"]
