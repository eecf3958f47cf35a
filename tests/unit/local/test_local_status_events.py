"""The local stack's Step Functions status change events carry what AWS's do."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

from sightline_local.moto_patches import STATUS_CHANGE, status_change_event


def execution(status: str, **fields) -> SimpleNamespace:
    return SimpleNamespace(**{"output": None, "error": None, "cause": None, **fields},
        exec_arn="arn:aws:states:us-east-1:123456789012:execution:sightline-train:mdl-1-v2",
        state_machine=SimpleNamespace(arn="arn:aws:states:us-east-1:123456789012:stateMachine:sightline-train"),
        name="mdl-1-v2", exec_status=SimpleNamespace(value=status),
        start_date=datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc),
        stop_date=datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc) if status != "RUNNING" else None,
        input_data={"model_id": "mdl-1", "version": 2})


def test_a_failed_execution_becomes_the_documented_event():
    entry = status_change_event(execution("FAILED", error="States.TaskFailed", cause="boom"))
    assert (entry["Source"], entry["DetailType"]) == ("aws.states", STATUS_CHANGE)
    assert entry["Resources"] == ["arn:aws:states:us-east-1:123456789012:execution:sightline-train:mdl-1-v2"]
    detail = json.loads(entry["Detail"])
    assert detail == {
        "executionArn": entry["Resources"][0],
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:sightline-train",
        "name": "mdl-1-v2", "status": "FAILED", "startDate": 1796090400000, "stopDate": 1796094000000,
        "input": json.dumps({"model_id": "mdl-1", "version": 2}), "output": None,
        "error": "States.TaskFailed", "cause": "boom",
    }


def test_a_running_execution_has_no_stop_date():
    detail = json.loads(status_change_event(execution("RUNNING"))["Detail"])
    assert (detail["status"], detail["stopDate"]) == ("RUNNING", None)
