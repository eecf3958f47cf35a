"""The local Batch job runner: a job's attempts run as local processes of the training entrypoint.

Attempts follow the job definition's retry strategy (``attempts``, ``evaluateOnExit``) and attempt timeout;
stopping a job or the stack sends SIGTERM, then SIGKILL, as Batch does.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("sightline.local")


def allowed_overrides() -> frozenset[str]:
    """The environment a SubmitJob may set: exactly the variables the workflow and the evaluations API send.
    Anything else (PATH, LD_PRELOAD, PYTHONPATH, AWS_*...) would run in a process on the user's machine."""
    from sightline.contract import EvaluationEnvironment, JobEnvironment

    sent = {str(name) for name in JobEnvironment} - {str(JobEnvironment.WEIGHTS_URI)}  # that one: the job definition's
    # Step Functions' Batch integration adds MANAGED_BY_AWS=STARTED_BY_STEP_FUNCTIONS to every job it submits.
    return frozenset(sent | {str(name) for name in EvaluationEnvironment} | {"MANAGED_BY_AWS"})


def refused_overrides(job: Any) -> list[str]:
    """The names among the job's environment overrides that ``allowed_overrides`` does not list."""
    overrides = (getattr(job, "container_overrides", None) or {}).get("environment") or []
    return sorted({str(entry.get("name")) for entry in overrides} - allowed_overrides())


class LocalJobRunner:
    """Runs Batch jobs of the template's job definitions as local processes, one at a time (one GPU)."""

    def __init__(self, command: list[str], base_env: dict[str, str], log_dir: Path, workdir: Path, concurrency: int = 1,
                 entrypoint: list[str] | None = None) -> None:
        self.command = command
        # The image's ENTRYPOINT: a job definition's (or job's) command replaces CMD after it, as in a container.
        self.entrypoint = entrypoint
        self.base_env = base_env
        self.log_dir = log_dir
        self.workdir = workdir
        self._slots = threading.Semaphore(concurrency)
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closing = False

    def shutdown(self) -> None:
        """Stop running jobs as Batch would (SIGTERM, then SIGKILL): the trainer checkpoints on the way out."""
        with self._lock:
            self._closing = True
            running = list(self._running)
        for process in running:
            _stop_process(process)

    def run(self, job: Any) -> None:
        """Run the job's attempts as the job definition's retry strategy says, one process each."""
        from moto.batch.utils import JobStatus

        job._status = JobStatus.PENDING
        refused = refused_overrides(job)
        if refused:
            job.job_stopped_reason = f"refused: environment overrides {', '.join(refused)} are not ones the workflow sends"
            log.error("batch job %s %s", job.job_name, job.job_stopped_reason)
            job._mark_stopped(success=False)
            return
        job._status = JobStatus.RUNNABLE
        retry_strategy = job.job_definition.retry_strategy or {}
        attempts = max(1, int(retry_strategy.get("attempts") or 1))
        with self._slots:
            for attempt in range(1, attempts + 1):
                if job.stop or self._closing:
                    job.job_stopped_reason = job.job_stopped_reason or "terminated before it started"
                    job._mark_stopped(success=False)
                    return
                exit_code, status_reason, last_line = self._run_attempt(job, attempt)
                if exit_code == 0 and not job.stop:
                    job._mark_stopped(success=True)
                    log.info("batch job %s succeeded (attempt %d)", job.job_name, attempt)
                    return
                retry = not job.stop and not self._closing and attempt < attempts and should_retry(
                    retry_strategy.get("evaluateOnExit") or [], exit_code, status_reason, reason=""
                )
                log.warning("batch job %s attempt %d failed (exit %s: %s)%s", job.job_name, attempt, exit_code,
                            last_line, "; retrying" if retry else "")
                if not retry:
                    job.job_stopped_reason = job.job_stopped_reason or (
                        f"{status_reason} with code {exit_code}: {last_line}"[:1000]
                    )
                    job._mark_stopped(success=False)
                    return

    def _run_attempt(self, job: Any, attempt: int) -> tuple[int, str, str]:
        """One container run: (exit code, Batch's status reason for it, the last line it printed)."""
        from moto.batch.utils import JobStatus

        job._status = JobStatus.STARTING
        command = self.command_for(job)
        environment = {e["name"]: e["value"] for e in job._get_container_property("environment", [])}
        env = {**self.base_env, **environment, "AWS_BATCH_JOB_ATTEMPT": str(attempt)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{job.job_id}-{attempt}.log"
        job.job_started_at = datetime.now()
        job.log_stream_name = str(log_path)
        job._start_attempt()
        job._status = JobStatus.RUNNING
        log.info("batch job %s (%s) attempt %d started: %s; log %s", job.job_name, job.job_id, attempt,
                 " ".join(command), log_path)
        tail: deque[str] = deque(maxlen=20)
        status_reason = "Essential container in task exited"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                command, env=env, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with self._lock:
                self._running.add(process)
            try:
                reader = threading.Thread(target=self._relay, args=(process, log_file, tail, job.job_name), daemon=True)
                reader.start()
                deadline = _attempt_deadline(job)
                while process.poll() is None:
                    if job.stop or (deadline and time.time() > deadline):
                        if not job.stop:
                            status_reason = "Job attempt duration exceeded timeout"
                        _stop_process(process)
                        break
                    time.sleep(0.5)
                process.wait()
                reader.join(timeout=5)
            finally:
                with self._lock:
                    self._running.discard(process)
        job.exit_code = process.returncode
        if job.latest_attempt is not None:
            job.latest_attempt["container"]["exitCode"] = process.returncode
            job.latest_attempt["statusReason"] = status_reason
            job.job_stopped_at = datetime.now()
            job._stop_attempt()
        last_line = next((line for line in reversed(tail) if line.strip()), "")
        return process.returncode, status_reason, last_line

    def command_for(self, job: Any) -> list[str]:
        """The process to run: the ENTRYPOINT and the job's command where it has one, else the image's command."""
        job_command = list(job._get_container_property("command", []) or [])
        if job_command and self.entrypoint is not None:
            return [*self.entrypoint, *job_command]
        return list(self.command)

    @staticmethod
    def _relay(process: subprocess.Popen, log_file: Any, tail: deque, name: str) -> None:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            log_file.write(line + "\n")
            log_file.flush()
            tail.append(line)
            log.info("[batch %s] %s", name, line)


def should_retry(rules: list[dict], exit_code: int, status_reason: str, reason: str) -> bool:
    """Batch's evaluateOnExit: the first rule whose every condition matches decides; none matching retries."""
    for rule in rules:
        conditions = (
            (rule.get("onExitCode"), str(exit_code)),
            (rule.get("onStatusReason"), status_reason),
            (rule.get("onReason"), reason),
        )
        if all(pattern is None or fnmatch.fnmatchcase(value, pattern) for pattern, value in conditions):
            return str(rule.get("action", "")).upper() == "RETRY"
    return True


def _attempt_deadline(job: Any) -> float | None:
    seconds = job._get_attempt_duration()
    return time.time() + int(seconds) if seconds else None


def _stop_process(process: subprocess.Popen) -> None:
    # Batch sends SIGTERM, then SIGKILL 30 s later; the trainer checkpoints on SIGTERM.
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
