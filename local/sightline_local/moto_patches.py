"""Where moto needs Docker or falls short, the local stack plugs in its own executors.

- Lambda: moto runs functions in Docker; here ``LambdaFunction.invoke`` goes to the warm worker processes.
- Batch: moto runs jobs in Docker; here ``Job.run`` hands the job to ``batch_runner.LocalJobRunner``.
- Step Functions: moto 5.2.5's ``batch:submitJob.sync`` passes ASL names (``JobName``) to boto3 unmapped and
  reads the answer with the wrong casing (``KeyError: 'JobName'``/``'JobId'``); the request and response are
  mapped through botocore's service model here, as AWS does.
- S3 notifications: moto swallows Lambda errors and runs the function inline in the PUT; here the event goes to
  the function asynchronously (with Lambda's two retries) and failures are logged.
- EventBridge: moto does not invoke Lambda, Step Functions or SNS targets; here matching rules deliver to them.
- Step Functions execution status changes: moto sends no "Step Functions Execution Status Change" events; here
  every execution that starts or ends puts one on the default bus, with the detail AWS sends.
- S3 delete markers: moto sends no notification when a delete in a versioned bucket creates a delete marker;
  S3 sends ``s3:ObjectRemoved:DeleteMarkerCreated``, and so does this.
- Costs: some moto calls cost time that grows with the table or the queue, or far more than AWS's (transactions,
  queries and their answers, SQS sends and receives, finding a request's service); ``moto_costs`` gives them
  costs closer to AWS's, with the same outcomes.
- Step Functions Distributed Map: moto's grammar has no ``ItemBatcher`` and its S3 ``listObjectsV2`` reader
  reads one page; ``distributed_map`` batches the reader's items and lists every page, as AWS does.
- SQS event sources: moto pushes each message to Lambda on its own, inside the send, and ignores
  ``batchItemFailures``; here a mapping is only recorded, and ``sqs_poller`` polls the queue as Lambda does.
"""
from __future__ import annotations

import copy
import json
import logging
from typing import Any, Callable

import botocore.session

from sightline_local import distributed_map, moto_costs
from sightline_local.batch_runner import LocalJobRunner
from sightline_local.lambda_runtime import LambdaRuntime

log = logging.getLogger("sightline.local")

_installed = False


class _Current:
    """The executors of the stack running in this process. moto is patched once per process; a stack started
    after another one stopped (the e2e test files, one after the other) rebinds the patches to its own."""

    runtime: LambdaRuntime | None = None
    job_runner: LocalJobRunner | None = None
    start_execution: Callable[[str, str], None] | None = None


class _Forward:
    """Stands for ``_Current.<name>`` at call time."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        target = getattr(_Current, self._name)
        if target is None:
            raise RuntimeError("no local stack is running in this process")
        return getattr(target, attribute)


def install(runtime: LambdaRuntime, job_runner: LocalJobRunner, start_execution: Callable[[str, str], None]) -> None:
    """Patch moto (once per process) so its services use this stack's local executors."""
    global _installed
    _Current.runtime, _Current.job_runner, _Current.start_execution = runtime, job_runner, start_execution
    if _installed:
        return
    _installed = True
    current_runtime: Any = _Forward("runtime")
    _patch_lambda(current_runtime)
    _patch_batch(_Forward("job_runner"))  # type: ignore[arg-type]
    _patch_stepfunctions_batch()
    distributed_map.install()
    _patch_s3_notifications(current_runtime)
    _patch_eventbridge_targets(current_runtime, lambda arn, payload: _Current.start_execution(arn, payload))  # type: ignore[misc]
    _patch_stepfunctions_status_events()
    _patch_sqs_event_sources()
    _patch_s3_delete_markers()
    moto_costs.install()


# ---------------------------------------------------------------- Lambda
def _patch_lambda(runtime: LambdaRuntime) -> None:
    from moto.awslambda.models import LambdaFunction

    def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> str | bytes:
        event = json.loads(body) if body else {}
        headers = {k.lower(): v for k, v in dict(request_headers or {}).items()}
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            runtime.invoke_async(self.function_name, event)
            return b""
        result = runtime.invoke(self.function_name, event)
        if result.error:
            response_headers["x-amz-function-error"] = "Unhandled"
        return result.body()

    LambdaFunction.invoke = invoke


# ---------------------------------------------------------------- Batch
def _patch_batch(job_runner: LocalJobRunner) -> None:
    from moto.batch.models import Job
    from moto.moto_api import state_manager

    # Job status is driven by the runner, never advanced by moto's state manager.
    state_manager.set_transition("batch::job", {"progression": "manual", "times": 10**9})

    def run(self: Any) -> None:
        try:
            job_runner.run(self)
        except Exception as error:  # noqa: BLE001 - a broken runner fails the job, not the server
            log.exception("batch job %s could not run", self.job_id)
            self.job_stopped_reason = f"local job runner failed: {error}"
            self._mark_stopped(success=False)

    Job.run = run


# ---------------------------------------------------------------- Step Functions
def _patch_stepfunctions_batch() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )

    service_model = botocore.session.get_session().get_service_model("batch")

    def operation(self: Any, service_action_name: str | None) -> Any:
        action = service_action_name or self._get_boto_service_action()
        return service_model.operation_model("".join(part.capitalize() for part in action.split("_")))

    def normalise_parameters(self: Any, parameters: dict, boto_service_name: str | None = None, service_action_name: str | None = None) -> None:
        self._to_boto_request(parameters, operation(self, service_action_name).input_shape)

    def normalise_response(self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None) -> None:
        self._from_boto_response(response, operation(self, service_action_name).output_shape)

    StateTaskServiceBatch._normalise_parameters = normalise_parameters
    StateTaskServiceBatch._normalise_response = normalise_response


# ---------------------------------------------------------------- S3 notifications
def _patch_s3_notifications(runtime: LambdaRuntime) -> None:
    from moto.s3 import models as s3_models
    from moto.s3 import notifications

    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        configuration = bucket.notification_configuration
        if configuration is None:
            return
        for notification in configuration.cloud_function:
            if notification.matches(event_name, key.name):
                event = notifications._get_s3_event(event_name, bucket, key, notification.id)
                runtime.invoke_async(notification.arn, event)
        # Queues, topics and EventBridge keep moto's own delivery.
        rest = _without_lambda(configuration)
        original_send_event(account_id, event_name, bucket, key, configuration=rest)

    original = notifications.send_event

    def original_send_event(account_id: str, event_name: Any, bucket: Any, key: Any, configuration: Any) -> None:
        saved = bucket.notification_configuration
        bucket.notification_configuration = configuration
        try:
            original(account_id, event_name, bucket, key)
        finally:
            bucket.notification_configuration = saved

    notifications.send_event = send_event
    s3_models.notifications.send_event = send_event


def _without_lambda(configuration: Any) -> Any:
    rest = copy.copy(configuration)
    rest.cloud_function = []
    return rest


# ---------------------------------------------------------------- EventBridge
def _patch_eventbridge_targets(runtime: LambdaRuntime, start_execution: Callable[[str, str], None]) -> None:
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        ours = [t for t in self.targets if parse_arn(t["Arn"]).service in ("lambda", "states", "sns")]
        if len(ours) < len(self.targets):
            # moto raises NotImplementedError on Lambda and Step Functions targets: give it only the rest.
            rest = copy.copy(self)
            rest.targets = [t for t in self.targets if t not in ours]
            original(rest, original_event, transform_input)
        for target in ours:
            payload = json.loads(target["Input"]) if target.get("Input") else original_event
            if parse_arn(target["Arn"]).service == "lambda":
                runtime.invoke_async(target["Arn"], payload)
                continue
            if parse_arn(target["Arn"]).service == "sns":
                _publish_to_topic(target["Arn"], payload)
                continue
            try:
                start_execution(target["Arn"], json.dumps(payload, default=str))
            except Exception:  # noqa: BLE001 - EventBridge retries; locally we log
                log.exception("could not start %s for an EventBridge rule", target["Arn"])

    Rule.send_to_targets = send_to_targets


# ---------------------------------------------------------------- SQS event sources
def _patch_sqs_event_sources() -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.sqs.models import sqs_backends

    original = LambdaBackend.create_event_source_mapping

    def create_event_source_mapping(self: Any, spec: dict[str, Any]) -> Any:
        mapping = original(self, spec)
        # Kept in Lambda's list (ListEventSourceMappings shows it) but detached from the queue's push.
        for queue in sqs_backends[self.account_id][self.region_name].queues.values():
            if queue.queue_arn == mapping.event_source_arn:
                queue.lambda_event_source_mappings.pop(mapping.function_arn, None)
        return mapping

    LambdaBackend.create_event_source_mapping = create_event_source_mapping


# ---------------------------------------------------------------- S3 delete markers
class _DeleteMarkerObject:
    """What a DeleteMarkerCreated notification says of the object: its key; no ETag, no size."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.etag = ""
        self.size = 0


def _patch_s3_delete_markers() -> None:
    from moto.s3 import models as s3_models
    from moto.s3 import notifications

    original = s3_models.S3Backend._set_delete_marker

    def set_delete_marker(self: Any, bucket_name: str, key_name: str) -> Any:
        marker = original(self, bucket_name, key_name)
        notifications.send_event(
            self.account_id,
            notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
            self.get_bucket(bucket_name),
            _DeleteMarkerObject(key_name),
        )
        return marker

    s3_models.S3Backend._set_delete_marker = set_delete_marker


def _publish_to_topic(topic_arn: str, payload: Any) -> None:
    """An EventBridge SNS target: the event, as JSON, is the message (as EventBridge sends it)."""
    from moto.sns.models import sns_backends
    from moto.utilities.arns import parse_arn

    arn = parse_arn(topic_arn)
    try:
        sns_backends[arn.account][arn.region].publish(message=json.dumps(payload, default=str), arn=topic_arn)
    except Exception:  # noqa: BLE001 - EventBridge retries; locally we log
        log.exception("could not publish to %s for an EventBridge rule", topic_arn)


# ---------------------------------------------------------------- Step Functions status change events
STATUS_CHANGE = "Step Functions Execution Status Change"


def status_change_event(execution: Any) -> dict[str, Any]:
    """The PutEvents entry AWS sends for an execution's status (detail as documented for EventBridge)."""
    def millis(stamp: Any) -> int | None:
        return int(stamp.timestamp() * 1000) if stamp is not None else None

    status = str(getattr(execution.exec_status, "value", execution.exec_status))
    output = getattr(execution, "output", None)
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine.arn,
        "name": execution.name,
        "status": status,
        "startDate": millis(execution.start_date),
        "stopDate": millis(execution.stop_date),
        "input": json.dumps(execution.input_data),
        "output": json.dumps(output) if output is not None and status == "SUCCEEDED" else None,
        "error": execution.error,
        "cause": execution.cause,
    }
    return {"Source": "aws.states", "DetailType": STATUS_CHANGE, "Detail": json.dumps(detail, default=str),
            "Resources": [execution.exec_arn]}


def _emit_status_change(execution: Any) -> None:
    from moto.events.models import events_backends

    try:
        events_backends[execution.account_id][execution.region_name].put_events([status_change_event(execution)])
    except Exception:  # noqa: BLE001 - a notification; the execution's own state is what counts
        log.exception("could not send the status change of %s", execution.exec_arn)


def _patch_stepfunctions_status_events() -> None:
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    original_start = Execution.start
    original_terminated = BaseExecutionWorkerCommunication.terminated

    def start(self: Any) -> None:
        original_start(self)
        _emit_status_change(self)

    def terminated(self: Any) -> None:
        original_terminated(self)
        _emit_status_change(self.execution)

    Execution.start = start
    BaseExecutionWorkerCommunication.terminated = terminated
