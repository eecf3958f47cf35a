"""One local stack per state dir: the pid file, ``local status``, ``local down`` (SIGTERM, then waiting for the
snapshot), stale pid files, and ``up`` refusing a second stack or starting one in the background."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from sightline_local import control
from sightline_local.cli import background_arguments, main

# A stand-in for a stack's process: "sightline" in its command line, a pid file of its own, and on SIGTERM (unless
# told to ignore it) a snapshot and the pid file removed, as the real stack's clean stop does.
FAKE_STACK = """
import json, signal, sys, time
from pathlib import Path
from sightline_local import control
state_dir, mode = Path(sys.argv[1]), sys.argv[2]
def stop(*_):
    (state_dir / "snapshot").mkdir(exist_ok=True)
    (state_dir / "snapshot" / "snapshot.json").write_text(json.dumps({"format": "sightline.local-snapshot/v1",
        "written_at": "2024-05-01T10:00:00.000000Z", "stack_key": "k", "buckets": {"DataBucket": {"a": [{"size": 3}]}},
        "tables": {"SightlineTable": [{"pk": {"S": "DATASET#d"}, "sk": {"S": "META"}}]}}))
    control.remove_pid_file(state_dir)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else stop)
control.write_pid_file(state_dir, control.RUNNING, started_at="2024-05-01T09:00:00Z", api_url="http://127.0.0.1:3999",
                       endpoint="http://127.0.0.1:4999", table="t", key_file=str(state_dir / "api-key"))
while True:
    time.sleep(0.1)
"""


@pytest.fixture
def fake_stack(tmp_path):
    started: list[subprocess.Popen] = []

    def start(mode: str = "clean") -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", FAKE_STACK, str(tmp_path), mode, "sightline-fake-stack"])
        started.append(process)
        deadline = time.monotonic() + 30
        while not (tmp_path / control.PID_FILE).exists():
            assert time.monotonic() < deadline and process.poll() is None, "the fake stack did not start"
            time.sleep(0.05)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_status_without_a_stack_says_so_and_exits_3(tmp_path):
    code, text = control.status(tmp_path)
    assert code == control.NOT_RUNNING_EXIT
    assert text.splitlines()[0] == f"Sightline local stack: not running (no local.pid in {tmp_path})"
    assert "snapshot       none yet" in text


def test_status_of_a_running_stack_shows_pid_urls_and_counts(tmp_path, fake_stack):
    process = fake_stack()
    code, text = control.status(tmp_path, counter=lambda record: {"datasets": 2, "models": 1})
    assert code == 0
    assert f"Sightline local stack: running (pid {process.pid}, since 2024-05-01T09:00:00Z)" in text
    assert "API            http://127.0.0.1:3999/v1" in text and "AWS endpoint   http://127.0.0.1:4999" in text
    assert "datasets       2" in text and "models         1" in text

    def unreachable(record):
        raise ConnectionError("connection refused")

    assert "datasets, models: not available (connection refused)" in control.status(tmp_path, counter=unreachable)[1]


def test_a_stale_pid_file_is_reported_by_status_and_removed_by_down(tmp_path):
    (tmp_path / control.PID_FILE).write_text(json.dumps({"pid": dead_pid(), "state": "running",
                                                         "updated_at": "2024-05-01T09:00:00Z"}))
    code, text = control.status(tmp_path)
    assert code == control.NOT_RUNNING_EXIT and "its pid file is stale" in text and "did not stop cleanly" in text
    said: list[str] = []
    assert control.down(tmp_path, out=said.append) == 0
    assert "removed a stale pid file" in said[0] and not (tmp_path / control.PID_FILE).exists()


def test_a_pid_that_is_not_a_sightline_process_counts_as_stale(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # no "sightline" in it
    try:
        control.write_pid_file(tmp_path, control.RUNNING)
        record = json.loads((tmp_path / control.PID_FILE).read_text())
        (tmp_path / control.PID_FILE).write_text(json.dumps({**record, "pid": other.pid}))
        assert control.read_pid_file(tmp_path).alive is False
    finally:
        other.kill()
        other.wait()


def test_down_without_a_stack_says_there_is_nothing_to_stop(tmp_path):
    said: list[str] = []
    assert control.down(tmp_path, out=said.append) == 0
    assert said == [f"no local stack runs from {tmp_path} (no local.pid): nothing to stop"]


def test_down_sends_sigterm_waits_for_the_snapshot_and_reports_it(tmp_path, fake_stack):
    process = fake_stack()
    said: list[str] = []
    assert control.down(tmp_path, timeout=30, out=said.append) == 0
    assert process.wait(5) == 0  # it exited through its SIGTERM handler
    assert said[0] == f"stopping the local stack (pid {process.pid}): writing its snapshot ..."
    assert said[1] == ("stopped. Snapshot of 2024-05-01T10:00:00.000000Z: 1 datasets, 0 models, 1 objects "
                       "(1 versions, 0.0 MB), 1 table items")
    assert not (tmp_path / control.PID_FILE).exists()


def test_down_gives_up_after_its_timeout_and_says_how_to_force_it(tmp_path, fake_stack):
    process = fake_stack("stubborn")
    said: list[str] = []
    assert control.down(tmp_path, timeout=0.5, out=said.append) == 1
    assert "did not stop within 0 s" in said[-1] or "did not stop within 1 s" in said[-1]
    assert f"`kill -9 {process.pid}`" in said[-1] and process.poll() is None


def test_a_pid_file_of_something_else_is_refused_with_its_path(tmp_path, capsys):
    (tmp_path / control.PID_FILE).write_text("not a pid")
    assert main(["local", "status", "--state-dir", str(tmp_path)]) == 2
    assert "local.pid is not a pid file of the local stack" in capsys.readouterr().err


def test_up_refuses_a_second_stack_on_the_same_state_dir(tmp_path, fake_stack, capsys):
    process = fake_stack()
    assert main(["local", "up", "--state-dir", str(tmp_path), "--no-demo"]) == 2
    error = capsys.readouterr().err
    assert f"a local stack already runs from {tmp_path} (pid {process.pid}, http://127.0.0.1:3999)" in error
    assert "`sightline local down` stops it" in error


def test_up_refuses_a_snapshot_of_another_format_and_keeps_it(tmp_path, capsys):
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "snapshot.json").write_text(json.dumps({"format": "sightline.local-snapshot/v99"}))
    for detach in ([], ["--detach"]):
        assert main(["local", "up", "--state-dir", str(tmp_path), "--no-demo", "--aws-port", "0", "--api-port", "0",
                     *detach]) == 2
        error = capsys.readouterr().err
        assert "is in format 'sightline.local-snapshot/v99'" in error and "--fresh" in error
    assert (tmp_path / "snapshot" / "snapshot.json").exists() and not (tmp_path / control.PID_FILE).exists()


def test_a_background_stack_that_cannot_start_shows_the_end_of_its_log(tmp_path):
    said: list[str] = []
    assert control.detach(tmp_path, ["--host", "192.0.2.1", "--state-dir", str(tmp_path)], out=said.append) == 1
    assert said[0].startswith("the local stack did not start (exit status 2)")
    assert "refusing to listen on 192.0.2.1" in said[1]
    assert (tmp_path / control.LOG_FILE).exists()


def test_the_background_process_gets_every_option_but_detach_and_fresh(tmp_path):
    import argparse

    args = argparse.Namespace(host="127.0.0.1", api_port=3001, aws_port=4567, log_level="DEBUG", demo_epochs=2,
                              expose=False, no_demo=True, fresh=True, detach=True)
    assert background_arguments(args, tmp_path) == [
        "--host", "127.0.0.1", "--api-port", "3001", "--aws-port", "4567", "--state-dir", str(tmp_path),
        "--log-level", "DEBUG", "--demo-epochs", "2", "--no-demo"]


def test_the_pid_file_is_this_users_alone_and_only_its_process_removes_it(tmp_path):
    control.write_pid_file(tmp_path, control.STARTING)
    path = tmp_path / control.PID_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["pid"] == os.getpid()
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "pid": os.getpid() + 1}))
    control.remove_pid_file(tmp_path)  # another process's file: left alone
    assert path.exists()
    path.write_text(json.dumps(record))
    control.remove_pid_file(tmp_path)
    assert not path.exists()


def test_no_pid_and_a_finished_process_are_not_a_stack():
    assert control.is_stack_process(-1) is False
    assert control.is_stack_process(0) is False
    assert control.is_stack_process(dead_pid()) is False
