"""Deploys the expanded template into moto, resource by resource, in dependency order.

moto's own CloudFormation cannot create this stack (its SAM-expanded IAM and Batch resources fail), so this
module plays CloudFormation's part: it resolves the intrinsic functions, creates each resource through the
real AWS APIs that moto serves, and records what the local executors need (function code, environment).
"""
from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, Callable

import boto3

from sightline_local.lambda_runtime import FunctionSpec
from sightline_local.sqs_poller import SqsEventSource
from sightline_local.template import PackagedTemplate, code_location

log = logging.getLogger("sightline.local.deploy")

ACCOUNT_ID = "123456789012"


@dataclass
class Physical:
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class DeployedStack:
    name: str
    region: str
    resources: dict[str, Physical]
    outputs: dict[str, str]
    functions: dict[str, FunctionSpec]
    template: PackagedTemplate
    rest_apis: dict[str, dict] = field(default_factory=dict)  # logical id -> resolved OpenAPI body
    api_key: str | None = None
    sqs_event_sources: list[SqsEventSource] = field(default_factory=list)  # polled by the stack, as Lambda does
    api_ids: dict[str, str] = field(default_factory=dict)  # REST API logical id -> its id in moto
    method_settings: list[dict] = field(default_factory=list)  # the stage's MethodSettings (throttles)
    usage_plan: dict = field(default_factory=dict)  # the usage plan's Throttle and Quota


def _key_filter(config: dict) -> dict:
    if "Filter" not in config:
        return {}
    rules = [{"Name": rule["Name"], "Value": rule["Value"]} for rule in config["Filter"]["S3Key"]["Rules"]]
    return {"Filter": {"Key": {"FilterRules": rules}}}


# Batches of one SQS event source in flight at once locally. Lambda runs up to MaximumConcurrency; here moto is one
# process, and on this 2-core machine one batch at a time registered 500 loose uploads in 32 s
# where four took 41 s: parallel batches only split a burst into more recomputes.
LOCAL_MAX_BATCHES = 1


class IntrinsicResolver:
    def __init__(self, stack: str, region: str, parameters: dict[str, Any], resources: dict[str, Physical],
                 conditions: dict[str, Any] | None = None) -> None:
        self.pseudo = {
            "AWS::StackName": stack,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack}/local",
        }
        self.parameters = parameters
        self.resources = resources
        self.conditions = conditions or {}

    def condition(self, name: str) -> bool:
        """The template's condition ``name``, evaluated as CloudFormation does (Fn::Equals, Not, And, Or)."""
        return self._truth(self.conditions[name])

    def _truth(self, value: Any) -> bool:
        (key, arg), = value.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.resolve(item) for item in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(item) for item in arg)
        if key == "Fn::Or":
            return any(self._truth(item) for item in arg)
        raise NotImplementedError(f"condition function {key} in the local deployment")

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.resources[name].ref

    def get_att(self, name: str, attribute: str) -> Any:
        physical = self.resources[name]
        if attribute not in physical.attributes:
            raise KeyError(f"{name} has no attribute {attribute} in the local deployment")
        return physical.attributes[attribute]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return self.resolve(text).split(separator)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not None}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def dependencies(value: Any) -> set[str]:
    """Logical ids a resource's properties refer to."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= dependencies(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if isinstance(arg, list):
                    found |= dependencies(arg[1])
            else:
                found |= dependencies(arg)
    return found


class Deployer:
    def __init__(self, endpoint: str, region: str, stack: str, deployment_bucket: str, credentials: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.region = region
        self.stack = stack
        self.deployment_bucket = deployment_bucket
        self._clients: dict[str, Any] = {}
        self.functions: dict[str, FunctionSpec] = {}
        self.layer_dirs: dict[str, Path] = {}
        self.api_key_value: str | None = None
        self.rest_apis: dict[str, dict] = {}
        self.api_ids: dict[str, str] = {}
        self.method_settings: list[dict] = []
        self.usage_plan: dict = {}
        self._batch_service_role: str | None = None
        self.creators: dict[str, Callable[[str, dict], Physical]] = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::DynamoDB::Table": self._table,
            "AWS::Events::EventBus": self._event_bus,
            "AWS::Events::Rule": self._event_rule,
            "AWS::IAM::Role": self._role,
            "AWS::IAM::InstanceProfile": self._instance_profile,
            "AWS::Lambda::LayerVersion": self._layer,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::Permission": self._permission,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::ECR::Repository": self._repository,
            "AWS::EC2::SecurityGroup": self._security_group,
            "AWS::EC2::LaunchTemplate": self._launch_template,
            "AWS::EC2::VPCEndpoint": self._vpc_endpoint,
            "AWS::Batch::ComputeEnvironment": self._compute_environment,
            "AWS::Batch::JobQueue": self._job_queue,
            "AWS::Batch::JobDefinition": self._job_definition,
            "AWS::ApiGateway::RestApi": self._rest_api,
            "AWS::ApiGateway::Deployment": self._api_child,
            "AWS::ApiGateway::Stage": self._api_stage,
            "AWS::ApiGateway::ApiKey": self._api_key,
            "AWS::ApiGateway::UsagePlan": self._usage_plan,
            "AWS::ApiGateway::UsagePlanKey": self._usage_plan_key,
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::SNS::Topic": self._topic,
            "AWS::SNS::TopicPolicy": self._topic_policy,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudFront::OriginAccessControl": self._cloudfront,
            "AWS::CloudFront::ResponseHeadersPolicy": self._cloudfront,
            "AWS::CloudFront::Distribution": self._cloudfront,
        }
        self.sqs_event_sources: list[SqsEventSource] = []

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
            )
        return self._clients[service]

    # ------------------------------------------------------------ orchestration
    def deploy(self, template: PackagedTemplate, parameters: dict[str, Any], api_key_value: str) -> DeployedStack:
        self.api_key_value = api_key_value
        self.template = template
        self.client("s3").create_bucket(Bucket=self.deployment_bucket)
        for key, archive in template.archives.items():
            self.client("s3").put_object(Bucket=self.deployment_bucket, Key=key, Body=archive)
        params = {name: spec.get("Default") for name, spec in template.parameters.items()}
        params.update(parameters)
        for name, spec in template.parameters.items():
            if spec.get("Type", "").startswith(("List<", "CommaDelimitedList")) and isinstance(params.get(name), str):
                params[name] = params[name].split(",")
        resources: dict[str, Physical] = {}
        self.resolver = IntrinsicResolver(self.stack, self.region, params, resources, template.conditions)
        graph = {
            logical_id: (dependencies(resource.get("Properties", {})) | set(_as_list(resource.get("DependsOn"))))
            & set(template.resources)
            for logical_id, resource in template.resources.items()
        }
        for logical_id in TopologicalSorter(graph).static_order():
            resource = template.resources[logical_id]
            if "Condition" in resource and not self.resolver.condition(resource["Condition"]):
                continue  # CloudFormation creates a resource only when its condition holds
            creator = self.creators.get(resource["Type"])
            if creator is None:
                raise NotImplementedError(f"the local stack cannot create {resource['Type']} ({logical_id})")
            properties = self.resolver.resolve(resource.get("Properties", {}))
            resources[logical_id] = creator(logical_id, properties)
            log.debug("created %s %s -> %s", resource["Type"], logical_id, resources[logical_id].ref)
        outputs = {name: str(self.resolver.resolve(o["Value"])) for name, o in template.outputs.items()
                   if "Condition" not in o or self.resolver.condition(o["Condition"])}
        return DeployedStack(
            self.stack, self.region, resources, outputs, self.functions, template, self.rest_apis, self.api_key_value,
            self.sqs_event_sources, api_ids=self.api_ids, method_settings=self.method_settings,
            usage_plan=self.usage_plan,
        )

    def _name(self, logical_id: str, lower: bool = False) -> str:
        name = f"{self.stack}-{logical_id}-{secrets.token_hex(4).upper()}"
        return name.lower() if lower else name

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    # ------------------------------------------------------------ storage and events
    def _bucket(self, logical_id: str, p: dict) -> Physical:
        name = p.get("BucketName") or self._name(logical_id, lower=True)
        s3 = self.client("s3")
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        s3.create_bucket(**kwargs)
        if p.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "BucketEncryption" in p:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"]}}
                        for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        cors_rules = p.get("CorsConfiguration", {}).get("CorsRules", [])
        if cors_rules:
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(rule) for rule in cors_rules]})
        notification = p.get("NotificationConfiguration", {})
        lambda_configs = [
            {"LambdaFunctionArn": config["Function"], "Events": [config["Event"]], **_key_filter(config)}
            for config in notification.get("LambdaConfigurations", [])
        ]
        queue_configs = [
            {"QueueArn": config["Queue"], "Events": [config["Event"]], **_key_filter(config)}
            for config in notification.get("QueueConfigurations", [])
        ]
        if lambda_configs or queue_configs:
            s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration={
                    **({"LambdaFunctionConfigurations": lambda_configs} if lambda_configs else {}),
                    **({"QueueConfigurations": queue_configs} if queue_configs else {}),
                },
            )
        return Physical(name, {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
                               "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com"})

    def _bucket_policy(self, logical_id: str, p: dict) -> Physical:
        # moto evaluates bucket policies, and the local endpoint is plain HTTP: the aws:SecureTransport deny (an
        # AWS-side guarantee) stays out here, the rest is applied as on AWS.
        document = p["PolicyDocument"]
        statements = [s for s in document.get("Statement", []) if not _denies_plain_http(s)]
        if statements:
            self.client("s3").put_bucket_policy(Bucket=p["Bucket"],
                                                Policy=json.dumps({**document, "Statement": statements}))
        return Physical(logical_id)

    # ------------------------------------------------------------ logs, queues, topics, alarms
    def _log_group(self, logical_id: str, p: dict) -> Physical:
        # The local functions and state machines log to the terminal; the group is created as on AWS all the same.
        name = p.get("LogGroupName") or f"/aws/sightline-local/{self._name(logical_id)}"
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in p:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        return Physical(name, {"Arn": self._arn("logs", f"log-group:{name}:*")})

    def _queue(self, logical_id: str, p: dict) -> Physical:
        name = p.get("QueueName") or self._name(logical_id)
        attributes = {key: str(p[key]) for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds",
                                                   "ReceiveMessageWaitTimeSeconds") if key in p}
        if "RedrivePolicy" in p:
            attributes["RedrivePolicy"] = json.dumps(p["RedrivePolicy"])
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Physical(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _queue_policy(self, logical_id: str, p: dict) -> Physical:
        for url in p["Queues"]:
            self.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
        return Physical(logical_id)

    def _event_source_mapping(self, logical_id: str, p: dict) -> Physical:
        kwargs: dict[str, Any] = {"FunctionName": p["FunctionName"], "EventSourceArn": p["EventSourceArn"],
                                  "Enabled": p.get("Enabled", True)}
        for key in ("BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "StartingPosition"):
            if key in p:
                kwargs[key] = p[key]
        mapping = self.client("lambda").create_event_source_mapping(**kwargs)
        if p["EventSourceArn"].startswith("arn:aws:sqs:"):
            queue_name = p["EventSourceArn"].rsplit(":", 1)[-1]
            self.sqs_event_sources.append(SqsEventSource(
                uuid=mapping["UUID"],
                function_arn=mapping["FunctionArn"],
                queue_arn=p["EventSourceArn"],
                queue_url=self.client("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"],
                batch_size=int(p.get("BatchSize", 10)),
                window_seconds=float(p.get("MaximumBatchingWindowInSeconds", 0)),
                report_item_failures="ReportBatchItemFailures" in p.get("FunctionResponseTypes", []),
                # Lambda runs up to MaximumConcurrency batches at once; locally the function's warm workers bound it.
                concurrency=min(int(p.get("ScalingConfig", {}).get("MaximumConcurrency", LOCAL_MAX_BATCHES)),
                                LOCAL_MAX_BATCHES),
            ))
        return Physical(mapping["UUID"])

    def _topic(self, logical_id: str, p: dict) -> Physical:
        name = p.get("TopicName") or self._name(logical_id)
        arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        return Physical(arn, {"TopicName": name, "TopicArn": arn})

    def _topic_policy(self, logical_id: str, p: dict) -> Physical:
        for arn in p["Topics"]:
            self.client("sns").set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                                                    AttributeValue=json.dumps(p["PolicyDocument"]))
        return Physical(logical_id)

    def _subscription(self, logical_id: str, p: dict) -> Physical:
        arn = self.client("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"],
                                           Endpoint=p["Endpoint"])["SubscriptionArn"]
        return Physical(arn)

    def _alarm(self, logical_id: str, p: dict) -> Physical:
        name = p.get("AlarmName") or self._name(logical_id)
        keys = ("AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
                "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions", "Metrics")
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **{key: p[key] for key in keys if key in p})
        return Physical(name, {"Arn": self._arn("cloudwatch", f"alarm:{name}")})

    def _table(self, logical_id: str, p: dict) -> Physical:
        name = p.get("TableName") or self._name(logical_id)
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": p["AttributeDefinitions"],
            "KeySchema": p["KeySchema"],
            "BillingMode": p.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if p.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
        self.client("dynamodb").create_table(**kwargs)
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):  # moto keeps expired items, but the setting is there as on AWS
            self.client("dynamodb").update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True})
        return Physical(name, {"Arn": self._arn("dynamodb", f"table/{name}")})

    def _event_bus(self, logical_id: str, p: dict) -> Physical:
        name = p["Name"]
        arn = self.client("events").create_event_bus(Name=name)["EventBusArn"]
        return Physical(name, {"Arn": arn, "Name": name})

    def _event_rule(self, logical_id: str, p: dict) -> Physical:
        name = p.get("Name") or self._name(logical_id)
        events = self.client("events")
        kwargs = {"Name": name, "EventBusName": p.get("EventBusName", "default"), "State": p.get("State", "ENABLED")}
        if "EventPattern" in p:
            kwargs["EventPattern"] = json.dumps(p["EventPattern"])
        arn = events.put_rule(**kwargs)["RuleArn"]
        targets = [{k: v for k, v in t.items() if k in ("Id", "Arn", "Input", "InputPath", "RoleArn")} for t in p.get("Targets", [])]
        if targets:
            events.put_targets(Rule=name, EventBusName=kwargs["EventBusName"], Targets=targets)
        return Physical(name, {"Arn": arn})

    # ------------------------------------------------------------ IAM
    def _role(self, logical_id: str, p: dict) -> Physical:
        name = p.get("RoleName") or self._name(logical_id)[:64]
        iam = self.client("iam")
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]))["Role"]
        for policy in p.get("Policies", []):
            # SAM's policy templates omit Version; IAM accepts that, moto insists on one.
            document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        for arn in p.get("ManagedPolicyArns", []):
            try:
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            except iam.exceptions.NoSuchEntityException:
                log.debug("managed policy %s is unknown to moto; skipped", arn)
        return Physical(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})

    def _instance_profile(self, logical_id: str, p: dict) -> Physical:
        name = p.get("InstanceProfileName") or self._name(logical_id)
        iam = self.client("iam")
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        for role in p.get("Roles", []):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        return Physical(name, {"Arn": profile["Arn"]})

    # ------------------------------------------------------------ Lambda
    def _layer(self, logical_id: str, p: dict) -> Physical:
        key = code_location(p["Content"])
        response = self.client("lambda").publish_layer_version(
            LayerName=p["LayerName"],
            Content={"S3Bucket": self.deployment_bucket, "S3Key": key},
            CompatibleRuntimes=p.get("CompatibleRuntimes", []),
        )
        arn = response["LayerVersionArn"]
        self.layer_dirs[arn] = self.template.code_dirs[key]
        return Physical(arn, {"Arn": arn})

    def _function(self, logical_id: str, p: dict) -> Physical:
        name = p.get("FunctionName") or self._name(logical_id)[:64]
        key = code_location(p["Code"])
        environment = {k: str(v) for k, v in p.get("Environment", {}).get("Variables", {}).items()}
        response = self.client("lambda").create_function(
            FunctionName=name,
            Runtime=p.get("Runtime", "python3.11"),
            Role=p["Role"],
            Handler=p["Handler"],
            Code={"S3Bucket": self.deployment_bucket, "S3Key": key},
            Timeout=int(p.get("Timeout", 3)),
            MemorySize=int(p.get("MemorySize", 128)),
            Environment={"Variables": environment},
            Layers=p.get("Layers", []),
        )
        self.functions[name] = FunctionSpec(
            name=name,
            logical_id=logical_id,
            arn=response["FunctionArn"],
            handler=p["Handler"],
            code_dir=self.template.code_dirs[key],
            layer_dirs=[self.layer_dirs[arn] for arn in p.get("Layers", [])],
            environment=environment,
            timeout=int(p.get("Timeout", 3)),
            memory_size=int(p.get("MemorySize", 128)),
        )
        return Physical(name, {"Arn": response["FunctionArn"]})

    def _permission(self, logical_id: str, p: dict) -> Physical:
        # Resource policies are not evaluated locally; the routing they allow is taken from the template.
        return Physical(logical_id)

    # ------------------------------------------------------------ Step Functions
    def _state_machine(self, logical_id: str, p: dict) -> Physical:
        definition = p["DefinitionString"]
        for name, value in p.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + name + "}", str(value))
        name = p.get("StateMachineName") or self._name(logical_id)
        arn = self.client("stepfunctions").create_state_machine(name=name, definition=definition, roleArn=p["RoleArn"])["stateMachineArn"]
        return Physical(arn, {"Arn": arn, "Name": name})

    # ------------------------------------------------------------ Batch and its network
    def _repository(self, logical_id: str, p: dict) -> Physical:
        name = p.get("RepositoryName") or self._name(logical_id, lower=True)
        repository = self.client("ecr").create_repository(repositoryName=name)["repository"]
        return Physical(name, {"Arn": repository["repositoryArn"], "RepositoryUri": repository["repositoryUri"]})

    def _security_group(self, logical_id: str, p: dict) -> Physical:
        group = self.client("ec2").create_security_group(
            GroupName=self._name(logical_id), Description=p["GroupDescription"], VpcId=p["VpcId"]
        )
        return Physical(group["GroupId"], {"GroupId": group["GroupId"]})

    def _launch_template(self, logical_id: str, p: dict) -> Physical:
        # Created in moto as on AWS (IMDSv2, encrypted volume); jobs run as local processes and never use it.
        template = self.client("ec2").create_launch_template(
            LaunchTemplateName=p.get("LaunchTemplateName") or self._name(logical_id),
            LaunchTemplateData=p["LaunchTemplateData"],
        )["LaunchTemplate"]
        return Physical(template["LaunchTemplateId"], {"LaunchTemplateId": template["LaunchTemplateId"],
                                                       "LatestVersionNumber": str(template["LatestVersionNumber"]),
                                                       "DefaultVersionNumber": str(template["DefaultVersionNumber"])})

    def _vpc_endpoint(self, logical_id: str, p: dict) -> Physical:
        # Network plumbing of the training subnets on AWS: local jobs reach moto directly, so nothing is created.
        return Physical(f"vpce-local-{logical_id.lower()}")

    def _cloudfront(self, logical_id: str, p: dict) -> Physical:
        # The console's distribution on AWS: locally the API front serves console/ itself at /console (with the
        # same headers), so nothing is created; ids and a domain name stand in for what outputs and CORS name.
        identifier = f"LOCAL{logical_id.upper()}"[:14]
        return Physical(identifier, {"Id": identifier, "DomainName": f"{identifier.lower()}.cloudfront.local"})

    def _compute_environment(self, logical_id: str, p: dict) -> Physical:
        name = p.get("ComputeEnvironmentName") or self._name(logical_id)
        resources = {_lower_first(k): v for k, v in p["ComputeResources"].items()}
        resources["ec2Configuration"] = [{_lower_first(k): v for k, v in c.items()} for c in resources.get("ec2Configuration", [])]
        if "launchTemplate" in resources:
            resources["launchTemplate"] = {_lower_first(k): str(v) for k, v in resources["launchTemplate"].items()}
        service_role = p.get("ServiceRole") or self._batch_service_linked_role()
        response = self.client("batch").create_compute_environment(
            computeEnvironmentName=name, type=p["Type"], state=p.get("State", "ENABLED"), computeResources=resources,
            serviceRole=service_role,
        )
        return Physical(response["computeEnvironmentArn"], {"ComputeEnvironmentArn": response["computeEnvironmentArn"]})

    def _batch_service_linked_role(self) -> str:
        # Without ServiceRole, Batch uses its service-linked role; moto wants it spelled out.
        if not self._batch_service_role:
            role = self.client("iam").create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"]
            self._batch_service_role = role["Arn"]
        return self._batch_service_role

    def _job_queue(self, logical_id: str, p: dict) -> Physical:
        name = p.get("JobQueueName") or self._name(logical_id)
        response = self.client("batch").create_job_queue(
            jobQueueName=name,
            state=p.get("State", "ENABLED"),
            priority=int(p.get("Priority", 1)),
            computeEnvironmentOrder=[
                {"order": int(o["Order"]), "computeEnvironment": o["ComputeEnvironment"]} for o in p["ComputeEnvironmentOrder"]
            ],
        )
        return Physical(response["jobQueueArn"], {"JobQueueArn": response["jobQueueArn"]})

    def _job_definition(self, logical_id: str, p: dict) -> Physical:
        name = p.get("JobDefinitionName") or self._name(logical_id)
        container = p["ContainerProperties"]
        response = self.client("batch").register_job_definition(
            jobDefinitionName=name,
            type=p["Type"],
            platformCapabilities=p.get("PlatformCapabilities", ["EC2"]),
            containerProperties={
                "image": container["Image"],
                "jobRoleArn": container.get("JobRoleArn"),
                "resourceRequirements": [{"type": r["Type"], "value": r["Value"]} for r in container.get("ResourceRequirements", [])],
                "environment": [{"name": e["Name"], "value": e["Value"]} for e in container.get("Environment", [])],
                **({"command": container["Command"]} if "Command" in container else {}),
            },
            retryStrategy={
                "attempts": int(p.get("RetryStrategy", {}).get("Attempts", 1)),
                "evaluateOnExit": [{_lower_first(k): v for k, v in e.items()} for e in p.get("RetryStrategy", {}).get("EvaluateOnExit", [])],
            },
            timeout={"attemptDurationSeconds": int(p["Timeout"]["AttemptDurationSeconds"])} if "Timeout" in p else {},
        )
        return Physical(response["jobDefinitionArn"], {"JobDefinitionArn": response["jobDefinitionArn"]})

    # ------------------------------------------------------------ API Gateway
    def _rest_api(self, logical_id: str, p: dict) -> Physical:
        self.rest_apis[logical_id] = p.get("Body", {})
        api = self.client("apigateway").create_rest_api(
            name=p.get("Name") or self._name(logical_id),
            binaryMediaTypes=p.get("Body", {}).get("x-amazon-apigateway-binary-media-types", []),
        )
        self.api_ids[logical_id] = api["id"]
        return Physical(api["id"], {"RootResourceId": api.get("rootResourceId", "")})

    def _api_child(self, logical_id: str, p: dict) -> Physical:
        return Physical(logical_id)

    def _api_stage(self, logical_id: str, p: dict) -> Physical:
        self.method_settings = p.get("MethodSettings", [])  # the front throttles by them
        return Physical(p["StageName"])

    def _api_key(self, logical_id: str, p: dict) -> Physical:
        key = self.client("apigateway").create_api_key(
            name=p.get("Name") or self._name(logical_id), enabled=True, value=self.api_key_value
        )
        return Physical(key["id"])

    def _usage_plan(self, logical_id: str, p: dict) -> Physical:
        # Its API stages let the authorizer and the API find it; the front applies its throttle and quota.
        kwargs: dict[str, Any] = {
            "name": p.get("UsagePlanName") or self._name(logical_id),
            "apiStages": [{"apiId": stage["ApiId"], "stage": stage["Stage"]} for stage in p.get("ApiStages", [])],
        }
        if "Throttle" in p:
            kwargs["throttle"] = {"rateLimit": float(p["Throttle"]["RateLimit"]),
                                  "burstLimit": int(p["Throttle"]["BurstLimit"])}
        if "Quota" in p:
            kwargs["quota"] = {"limit": int(p["Quota"]["Limit"]), "period": p["Quota"]["Period"]}
        plan = self.client("apigateway").create_usage_plan(**kwargs)
        self.usage_plan = {"Throttle": p.get("Throttle"), "Quota": p.get("Quota")}
        return Physical(plan["id"])

    def _usage_plan_key(self, logical_id: str, p: dict) -> Physical:
        key = self.client("apigateway").create_usage_plan_key(usagePlanId=p["UsagePlanId"], keyId=p["KeyId"],
                                                              keyType=p.get("KeyType", "API_KEY"))
        return Physical(key["id"])


def _cors_rule(rule: dict) -> dict:
    """A CloudFormation ``CorsRule`` as S3's ``PutBucketCors`` takes it (other names for the same fields)."""
    names = {"Id": "ID", "AllowedMethods": "AllowedMethods", "AllowedOrigins": "AllowedOrigins",
             "AllowedHeaders": "AllowedHeaders", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
    return {names[field]: value for field, value in rule.items()}


def _denies_plain_http(statement: dict) -> bool:
    condition = statement.get("Condition", {}).get("Bool", {})
    return statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false"


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]
