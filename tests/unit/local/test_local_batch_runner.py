"""The local Batch runner: jobs run as processes and honour the job definition's retry strategy."""
from __future__ import annotations

import sys
from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

from sightline_local.batch_runner import LocalJobRunner, should_retry

ROOT = Path(__file__).resolve().parents[3]


def template_retry_rules() -> list[dict]:
    """The template's evaluateOnExit rules, keyed as the Batch API (and the local deployer) spell them."""
    strategy = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]["TrainingJobDefinition"]["Properties"]["RetryStrategy"]
    return [{key[:1].lower() + key[1:]: value for key, value in rule.items()} for rule in strategy["EvaluateOnExit"]]


def test_the_templates_rules_retry_spot_reclaims_and_checkpointed_stops_only():
    rules = template_retry_rules()
    assert should_retry(rules, 143, "Essential container in task exited", "")
    assert should_retry(rules, 137, "Host EC2 (instance i-0abc) terminated.", "")
    assert not should_retry(rules, 1, "Essential container in task exited", "")
    assert not should_retry(rules, 2, "Essential container in task exited", "")


def test_no_matching_rule_means_retry_as_in_batch():
    assert should_retry([], 1, "Essential container in task exited", "")
    assert should_retry([{"onExitCode": "3", "action": "EXIT"}], 1, "x", "")


class FakeJob:
    """The parts of moto's Batch job the runner drives."""

    def __init__(self, attempts: int, rules: list[dict]) -> None:
        self.job_definition = type("JobDefinition", (), {"retry_strategy": {"attempts": attempts, "evaluateOnExit": rules}})()
        self.job_name, self.job_id = "train", "job-1"
        self.stop = False
        self.attempts: list[dict] = []
        self.latest_attempt: dict | None = None
        self.job_stopped_reason: str | None = None
        self.succeeded: bool | None = None
        self._status = "SUBMITTED"

    command: list[str] = []

    def _get_container_property(self, name: str, default: list) -> list:
        if name == "command":
            return self.command or default
        return [{"name": "SIGHTLINE_TEMPLATE", "value": "mobilenet_v3_small"}]

    def _get_attempt_duration(self) -> None:
        return None

    def _start_attempt(self) -> None:
        self.latest_attempt = {"container": {}}
        self.attempts.append(self.latest_attempt)

    def _stop_attempt(self) -> None:
        pass

    def _mark_stopped(self, success: bool) -> None:
        self.succeeded = success


def runner(tmp_path: Path, script: str) -> LocalJobRunner:
    return LocalJobRunner([sys.executable, "-c", script], {"PATH": "/usr/bin:/bin"}, tmp_path / "logs", tmp_path)


def test_a_checkpointed_stop_is_retried_and_the_next_attempt_succeeds(tmp_path):
    job = FakeJob(attempts=3, rules=template_retry_rules())
    script = "import os, sys; print('attempt', os.environ['AWS_BATCH_JOB_ATTEMPT']); sys.exit(143 if os.environ['AWS_BATCH_JOB_ATTEMPT'] == '1' else 0)"
    runner(tmp_path, script).run(job)
    assert job.succeeded is True
    assert [a["container"]["exitCode"] for a in job.attempts] == [143, 0]
    assert (tmp_path / "logs" / "job-1-2.log").read_text().strip() == "attempt 2"


def test_a_real_failure_is_not_retried_and_says_why(tmp_path):
    job = FakeJob(attempts=3, rules=template_retry_rules())
    runner(tmp_path, "import sys; print('training needs at least 2 classes', file=sys.stderr); sys.exit(2)").run(job)
    assert job.succeeded is False
    assert len(job.attempts) == 1
    assert "code 2" in job.job_stopped_reason and "at least 2 classes" in job.job_stopped_reason


def test_attempts_are_bounded(tmp_path):
    job = FakeJob(attempts=2, rules=[])
    runner(tmp_path, "import sys; sys.exit(143)").run(job)
    assert job.succeeded is False and len(job.attempts) == 2


def test_shutdown_stops_a_running_job_with_sigterm_first(tmp_path):
    import threading
    import time

    job = FakeJob(attempts=3, rules=[])  # a stopping stack starts no further attempt
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('checkpointed', flush=True), sys.exit(143)))\n"
        "print('training', flush=True)\n"
        "time.sleep(60)\n"
    )
    local = runner(tmp_path, script)
    thread = threading.Thread(target=local.run, args=(job,))
    thread.start()
    log = tmp_path / "logs" / "job-1-1.log"
    deadline = time.time() + 20
    while time.time() < deadline and not (log.exists() and "training" in log.read_text()):
        time.sleep(0.1)
    local.shutdown()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert job.succeeded is False and len(job.attempts) == 1 and job.attempts[0]["container"]["exitCode"] == 143
    assert "checkpointed" in log.read_text()


def test_a_job_definitions_command_follows_the_images_entrypoint(tmp_path):
    """As in a container: the evaluation job definition's Command (``evaluate``) replaces CMD after ENTRYPOINT."""
    entrypoint = [sys.executable, "-m", "sightline_training"]
    runner = LocalJobRunner(entrypoint, {}, tmp_path, tmp_path, entrypoint=entrypoint)
    job = FakeJob(1, [])
    assert runner.command_for(job) == entrypoint
    job.command = ["evaluate"]
    assert runner.command_for(job) == [*entrypoint, "evaluate"]
    definition = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]["EvaluationJobDefinition"]
    assert definition["Properties"]["ContainerProperties"]["Command"] == ["evaluate"]


def test_environment_overrides_the_workflow_does_not_send_refuse_the_job(tmp_path):
    marker = tmp_path / "ran"
    script = f"open({str(marker)!r}, 'w').write('ran')"
    job = FakeJob(attempts=1, rules=[])
    job.container_overrides = {"environment": [{"name": "SIGHTLINE_MANIFEST_URI", "value": "s3://b/m.json"},
                                               {"name": "LD_PRELOAD", "value": "/tmp/evil.so"},
                                               {"name": "PATH", "value": "/tmp/evil"}]}
    runner(tmp_path, script).run(job)
    assert job.succeeded is False and job.attempts == [] and not marker.exists()
    assert "LD_PRELOAD" in job.job_stopped_reason and "PATH" in job.job_stopped_reason

    allowed = FakeJob(attempts=1, rules=[])
    allowed.container_overrides = {"environment": [{"name": name, "value": "x"} for name in (
        "SIGHTLINE_MANIFEST_URI", "SIGHTLINE_OUTPUT_URI", "SIGHTLINE_CHECKPOINT_URI", "SIGHTLINE_TEMPLATE",
        "SIGHTLINE_PARAMS", "SIGHTLINE_CORRELATION_ID", "SIGHTLINE_EVALUATION_MANIFEST_URI", "MANAGED_BY_AWS")]}
    runner(tmp_path, script).run(allowed)
    assert allowed.succeeded is True and marker.read_text() == "ran"
