"""The local Lambda runtime's worker pools: bursts queue for a bounded set of warm workers, and never forever."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sightline_local.lambda_runtime import FunctionSpec, LambdaRuntime

HANDLERS = '''
import os, pathlib, time

def brief(event, context):
    time.sleep(0.02)
    return {"n": event["n"], "pid": os.getpid()}

def gated(event, context):
    folder = pathlib.Path(os.environ["GATE_DIR"])
    (folder / "started").touch()
    deadline = time.time() + 60
    while not (folder / "release").exists() and time.time() < deadline:
        time.sleep(0.01)
    return {"released": True}
'''


def function(code_dir: Path, handler: str, max_workers: int) -> FunctionSpec:
    name = handler.replace(".", "-")
    return FunctionSpec(
        name=name,
        logical_id=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        handler=handler,
        code_dir=code_dir,
        layer_dirs=[],
        environment={"GATE_DIR": str(code_dir)},
        timeout=60,
        max_workers=max_workers,
    )


def wait_for(path: Path) -> None:
    deadline = time.time() + 30
    while not path.exists() and time.time() < deadline:
        time.sleep(0.01)
    assert path.exists(), f"{path} never appeared"


def test_fifty_concurrent_invocations_queue_for_a_bounded_pool(tmp_path):
    (tmp_path / "handlers.py").write_text(HANDLERS)
    runtime = LambdaRuntime({"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    runtime.register(function(tmp_path, "handlers.brief", max_workers=4))
    try:
        with ThreadPoolExecutor(max_workers=50) as callers:
            results = list(callers.map(lambda n: runtime.invoke("handlers-brief", {"n": n}), range(50)))
    finally:
        runtime.shutdown()
    assert [r.error for r in results] == [False] * 50
    assert sorted(r.payload["n"] for r in results) == list(range(50))
    assert len({r.payload["pid"] for r in results}) <= 4


def test_a_caller_that_waits_too_long_for_a_worker_is_throttled_not_blocked(tmp_path):
    (tmp_path / "handlers.py").write_text(HANDLERS)
    runtime = LambdaRuntime({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, queue_timeout=0.5)
    runtime.register(function(tmp_path, "handlers.gated", max_workers=1))
    try:
        with ThreadPoolExecutor(max_workers=2) as callers:
            try:
                holding = callers.submit(runtime.invoke, "handlers-gated", {})
                wait_for(tmp_path / "started")  # the only worker is busy until released
                waiting = callers.submit(runtime.invoke, "handlers-gated", {})
                throttled = waiting.result(timeout=30)
            finally:
                (tmp_path / "release").touch()
            assert throttled.error and throttled.payload["errorType"] == "TooManyRequestsException"
            assert holding.result(timeout=30).payload == {"released": True}
        # The pool is whole again: the next caller gets the worker.
        assert runtime.invoke("handlers-gated", {}).payload == {"released": True}
    finally:
        runtime.shutdown()
