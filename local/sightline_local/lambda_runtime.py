"""Runs the template's Lambda functions as pools of warm worker processes (no Docker needed)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightline_local.lambda_worker import read_frame, write_frame

log = logging.getLogger("sightline.local.lambda")

# A caller waits for a busy function's free worker as long as one invocation may run, and at least this long.
MIN_QUEUE_TIMEOUT_SECONDS = 30.0


class FunctionThrottled(RuntimeError):
    """No worker of the function came free in time (Lambda's TooManyRequestsException)."""


@dataclass
class FunctionSpec:
    """What the template says about one function, resolved for this machine."""

    name: str
    logical_id: str
    arn: str
    handler: str
    code_dir: Path
    layer_dirs: list[Path]
    environment: dict[str, str]
    timeout: int = 3
    memory_size: int = 128
    max_workers: int = 4


@dataclass
class InvocationResult:
    payload: Any
    error: bool = False
    duration: float = 0.0

    def body(self) -> bytes:
        return json.dumps(self.payload, default=str).encode()


class _Worker:
    def __init__(self, spec: FunctionSpec, base_env: dict[str, str]) -> None:
        env = {**base_env, **spec.environment}
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=spec.name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_size),
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            SIGHTLINE_FUNCTION_ARN=spec.arn,
            # The function sees its code and its layers, as in Lambda (/var/task, /opt/python).
            PYTHONPATH=os.pathsep.join([str(spec.code_dir), *map(str, spec.layer_dirs)]),
            PYTHONUNBUFFERED="1",
            # No X-Ray daemon locally (as under sam local): Powertools' Tracer stays off.
            POWERTOOLS_TRACE_DISABLED="true",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sightline_local.lambda_worker", str(spec.code_dir), spec.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(spec.code_dir),
        )
        threading.Thread(target=self._relay_logs, args=(spec.name,), daemon=True).start()
        hello = read_frame(self.process.stdout)
        if not hello or not hello.get("ready"):
            self.kill()
            error = (hello or {}).get("error") or {"errorMessage": "worker exited during start-up"}
            raise RuntimeError(f"{spec.name}: cannot load handler {spec.handler}: {error['errorMessage']}")

    def _relay_logs(self, name: str) -> None:
        for line in iter(self.process.stderr.readline, b""):
            log.info("[%s] %s", name, line.decode(errors="replace").rstrip())

    def invoke(self, event: Any, timeout: int) -> InvocationResult:
        started = time.time()
        deadline = started + timeout
        write_frame(self.process.stdin, {"event": event, "deadline": deadline, "request_id": str(uuid.uuid4())})
        reply: dict | None = None
        reader = threading.Thread(target=lambda: reply_box.append(read_frame(self.process.stdout)), daemon=True)
        reply_box: list = []
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.kill()
            return InvocationResult(
                {"errorMessage": f"Task timed out after {timeout:.2f} seconds", "errorType": "Sandbox.Timedout"},
                error=True,
                duration=time.time() - started,
            )
        reply = reply_box[0] if reply_box else None
        if reply is None:
            self.kill()
            return InvocationResult(
                {"errorMessage": "the function's process exited unexpectedly", "errorType": "Runtime.ExitError"},
                error=True,
                duration=time.time() - started,
            )
        if "error" in reply:
            return InvocationResult(reply["error"], error=True, duration=time.time() - started)
        return InvocationResult(reply.get("result"), duration=time.time() - started)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class _Pool:
    spec: FunctionSpec
    idle: list[_Worker] = field(default_factory=list)
    busy: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)


class LambdaRuntime:
    """Invokes functions by name; each function keeps up to ``max_workers`` warm processes.

    Callers beyond that queue for a free worker; one still waiting after ``queue_timeout`` seconds (by default
    the function's timeout, at least ``MIN_QUEUE_TIMEOUT_SECONDS``) is throttled instead of waiting forever.
    """

    def __init__(self, base_env: dict[str, str], queue_timeout: float | None = None) -> None:
        self._base_env = base_env
        self._queue_timeout = queue_timeout
        self._pools: dict[str, _Pool] = {}
        self._async = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda-async")

    @property
    def base_env(self) -> dict[str, str]:
        """The environment every function starts from (a copy): the AWS endpoint, region and credentials."""
        return dict(self._base_env)

    def register(self, spec: FunctionSpec) -> None:
        self._pools[spec.name] = _Pool(spec)

    def knows(self, name: str) -> bool:
        return self._resolve(name) is not None

    def _resolve(self, name_or_arn: str) -> _Pool | None:
        if name_or_arn in self._pools:
            return self._pools[name_or_arn]
        for pool in self._pools.values():
            if name_or_arn in (pool.spec.arn, pool.spec.logical_id) or name_or_arn.split(":")[-1] == pool.spec.name:
                return pool
        return None

    def invoke(self, name_or_arn: str, event: Any) -> InvocationResult:
        pool = self._resolve(name_or_arn)
        if pool is None:
            return InvocationResult({"errorMessage": f"Function not found: {name_or_arn}", "errorType": "ResourceNotFoundException"}, error=True)
        try:
            worker = self._checkout(pool)
        except FunctionThrottled as throttled:
            log.warning("%s throttled: %s", pool.spec.name, throttled)
            return InvocationResult({"errorMessage": str(throttled), "errorType": "TooManyRequestsException"}, error=True)
        try:
            result = worker.invoke(event, pool.spec.timeout)
        except Exception:
            worker.kill()
            raise
        finally:
            self._checkin(pool, worker)
        level = logging.WARNING if result.error else logging.DEBUG
        log.log(level, "%s %s in %.0f ms%s", pool.spec.name, "failed" if result.error else "ran",
                result.duration * 1000, f": {result.payload.get('errorType')}: {result.payload.get('errorMessage')}" if result.error else "")
        return result

    def invoke_async(self, name_or_arn: str, event: Any, retries: int = 2) -> None:
        """An ``Event`` invocation: Lambda retries a failing asynchronous invocation twice, so does this."""

        def run() -> None:
            for attempt in range(retries + 1):
                try:
                    result = self.invoke(name_or_arn, event)
                except Exception:  # noqa: BLE001 - logged, like Lambda's async failures
                    log.exception("asynchronous invocation of %s broke", name_or_arn)
                    result = None
                if result is not None and not result.error:
                    return
                if attempt < retries:
                    time.sleep(2**attempt)
            log.error("asynchronous invocation of %s failed after %d attempts; event dropped: %s",
                      name_or_arn, retries + 1, json.dumps(event)[:500])

        self._async.submit(run)

    def _checkout(self, pool: _Pool) -> _Worker:
        """A warm worker, else a new one while the pool has room, else the next one a caller gives back."""
        timeout = self._queue_timeout if self._queue_timeout is not None else max(pool.spec.timeout, MIN_QUEUE_TIMEOUT_SECONDS)
        deadline = time.monotonic() + timeout
        with pool.lock:
            while True:
                while pool.idle:
                    worker = pool.idle.pop()
                    if worker.alive:
                        pool.busy += 1
                        return worker
                if pool.busy < pool.spec.max_workers:
                    pool.busy += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FunctionThrottled(f"all {pool.spec.max_workers} workers stayed busy for {timeout:g} s")
                pool.lock.wait(remaining)
        try:
            return _Worker(pool.spec, self._base_env)
        except Exception:
            with pool.lock:
                pool.busy -= 1
                pool.lock.notify()
            raise

    def _checkin(self, pool: _Pool, worker: _Worker) -> None:
        with pool.lock:
            pool.busy -= 1
            if worker.alive:
                pool.idle.append(worker)
            pool.lock.notify()

    def warm(self, names: list[str] | None = None) -> None:
        """Start one worker per function now, so the first request does not pay the imports."""
        for pool in self._pools.values():
            if names is None or pool.spec.name in names:
                self._checkin(pool, self._checkout(pool))

    def shutdown(self) -> None:
        self._async.shutdown(wait=False, cancel_futures=True)
        for pool in self._pools.values():
            with pool.lock:
                for worker in pool.idle:
                    worker.kill()
                pool.idle.clear()
