"""One local stack per state dir: its pid file, ``sightline local status``, ``down`` and ``up --detach``.

The pid file (``<state dir>/local.pid``, JSON) is written by the stack's own process as it starts (``starting``)
and again once it serves (``running``, with its URLs and table); the process removes it when it stops cleanly.
A pid file whose process is gone is stale: the stack was killed (its last snapshot is what a restart restores).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

PID_FILE = "local.pid"
LOG_FILE = "local.log"
STARTING = "starting"
RUNNING = "running"
NOT_RUNNING_EXIT = 3  # `status` when no stack runs (as LSB init scripts say "not running")
PROCESS_MARK = "sightline"  # in the command line of every stack process (python -m sightline_local.cli / sightline)


@dataclass
class Found:
    """What the pid file says, and whether its process still runs."""

    record: dict[str, Any]
    alive: bool

    @property
    def pid(self) -> int:
        return int(self.record["pid"])


def pid_path(state_dir: Path) -> Path:
    return state_dir / PID_FILE


def write_pid_file(state_dir: Path, state: str, **details: Any) -> None:
    """This process's record (mode 0600: it names the table and the URLs), replaced atomically."""
    from sightline_local.snapshot import write_atomically

    state_dir.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "state": state, "state_dir": str(state_dir.resolve()), "updated_at": now(),
              **details}
    write_atomically(pid_path(state_dir), (json.dumps(record, indent=2) + "\n").encode())


def remove_pid_file(state_dir: Path) -> None:
    """Remove the pid file if it is this process's (a stack that failed to start must not remove another's)."""
    found = read_pid_file(state_dir)
    if found is not None and found.pid == os.getpid():
        pid_path(state_dir).unlink(missing_ok=True)


def read_pid_file(state_dir: Path) -> Found | None:
    path = pid_path(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        if isinstance(record, int):
            record = {"pid": record}
        pid = int(record["pid"])
    except (ValueError, TypeError, KeyError):
        raise ControlError(f"{path} is not a pid file of the local stack (its content: {text[:80]!r}); remove it "
                           "if no stack runs from this state dir") from None
    return Found(record, alive=is_stack_process(pid))


class ControlError(Exception):
    """A refusal with the reason; the CLI prints it and exits non-zero."""


def is_stack_process(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie) and, where /proc tells, is a Sightline process (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not ours
    proc = Path("/proc") / str(pid)
    if not proc.exists():
        return True  # no /proc (macOS): the signal check is all there is
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state != "Z" and PROCESS_MARK in command


# ---------------------------------------------------------------- status


def status(state_dir: Path, counter: Callable[[dict], dict[str, int]] | None = None) -> tuple[int, str]:
    """(exit code, text) of ``sightline local status``."""
    from sightline_local import snapshot

    found = read_pid_file(state_dir)
    lines = []
    code = 0
    if found is None:
        lines.append(f"Sightline local stack: not running (no {PID_FILE} in {state_dir})")
        code = NOT_RUNNING_EXIT
    elif not found.alive:
        lines.append(f"Sightline local stack: not running; its pid file is stale (pid {found.pid}, "
                     f"{found.record.get('state', '?')} at {found.record.get('updated_at', '?')}, is gone: the stack "
                     f"did not stop cleanly). `sightline local up` starts it again from the last snapshot.")
        code = NOT_RUNNING_EXIT
    else:
        record = found.record
        lines.append(f"Sightline local stack: {record.get('state', RUNNING)} (pid {found.pid}, since "
                     f"{record.get('started_at', record.get('updated_at', '?'))})")
        if record.get("state") == RUNNING:
            lines += [f"  API            {record['api_url']}/v1",
                      f"  AWS endpoint   {record['endpoint']}",
                      f"  API key        in {record.get('key_file', state_dir / 'api-key')}"]
            try:
                counts = (counter or count_items)(record)
                lines += [f"  datasets       {counts['datasets']}", f"  models         {counts['models']}"]
            except Exception as error:  # noqa: BLE001 - the rest of the status still helps
                lines.append(f"  datasets, models: not available ({error})")
    lines.append(f"  state dir      {state_dir}")
    if (state_dir / LOG_FILE).exists():
        lines.append(f"  log            {state_dir / LOG_FILE}")
    try:
        document = snapshot.load(state_dir)
        lines.append("  snapshot       " + (
            f"of {document['written_at']}: {snapshot.summarise(document).describe()}" if document else "none yet"))
    except snapshot.SnapshotError as error:
        lines.append(f"  snapshot       unusable: {error}")
    return code, "\n".join(lines)


def count_items(record: dict) -> dict[str, int]:
    """Datasets and models of a running stack, counted in its table's index (as the API lists them)."""
    import boto3
    from boto3.dynamodb.conditions import Key

    from sightline import keys

    table = boto3.resource(
        "dynamodb", endpoint_url=record["endpoint"], region_name=record.get("region", "us-east-1"),
        aws_access_key_id="sightline-local", aws_secret_access_key="sightline-local",
    ).Table(record["table"])
    counts = {}
    for name, partition in (("datasets", keys.DATASETS_INDEX_PK), ("models", keys.MODELS_INDEX_PK)):
        total, start = 0, None
        while True:
            page = table.query(IndexName=keys.GSI1, KeyConditionExpression=Key("gsi1pk").eq(partition),
                               Select="COUNT", **({"ExclusiveStartKey": start} if start else {}))
            total += page["Count"]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        counts[name] = total
    return counts


# ---------------------------------------------------------------- down


def down(state_dir: Path, timeout: float = 120.0, out: Callable[[str], None] = print) -> int:
    """Stop the stack running from ``state_dir`` (SIGTERM: it writes its snapshot and exits) and wait for it."""
    from sightline_local import snapshot

    found = read_pid_file(state_dir)
    if found is None:
        out(f"no local stack runs from {state_dir} (no {PID_FILE}): nothing to stop")
        return 0
    if not found.alive:
        pid_path(state_dir).unlink(missing_ok=True)
        out(f"no local stack runs from {state_dir}: removed a stale pid file (pid {found.pid} is gone; the stack did "
            "not stop cleanly, so what changed after its last snapshot is lost)")
        return 0
    out(f"stopping the local stack (pid {found.pid}): writing its snapshot ...")
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_stack_process(found.pid):
        if time.monotonic() > deadline:
            out(f"the local stack (pid {found.pid}) did not stop within {timeout:.0f} s; see "
                f"{state_dir / LOG_FILE}. `kill -9 {found.pid}` stops it, losing what changed after its last snapshot")
            return 1
        time.sleep(0.2)
    pid_path(state_dir).unlink(missing_ok=True)  # a clean stop removed it already
    try:
        document = snapshot.load(state_dir)
    except snapshot.SnapshotError as error:
        document = None
        out(f"warning: {error}")
    if document is not None:
        out(f"stopped. Snapshot of {document['written_at']}: {snapshot.summarise(document).describe()}")
    else:
        out("stopped (no snapshot was written)")
    return 0


# ---------------------------------------------------------------- up --detach


def detach(state_dir: Path, up_arguments: list[str], timeout: float = 300.0,
           out: Callable[[str], None] = print) -> int:
    """Start ``sightline local up <up_arguments>`` as a background process (its output in the log file) and wait
    until it serves, or say why it did not."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / LOG_FILE
    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # requests, names: this user's
    with os.fdopen(descriptor, "ab") as log:
        log.write(f"\n--- sightline local up (background), {now()} ---\n".encode())
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "sightline_local.cli", "local", "up", *up_arguments],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        exited = process.poll()
        if exited is not None:
            out(f"the local stack did not start (exit status {exited}); the end of {log_path}:")
            out(_tail(log_path))
            return 1
        found = read_pid_file(state_dir)
        if found is not None and found.pid == process.pid and found.record.get("state") == RUNNING:
            record = found.record
            out(f"Sightline local stack started in the background (pid {process.pid}).\n"
                f"  API            {record['api_url']}/v1\n"
                f"  AWS endpoint   {record['endpoint']}\n"
                f"  API key        in {record['key_file']}\n"
                f"  log            {log_path}\n"
                "`sightline local status` shows it, `sightline local down` stops it (its state is kept).")
            return 0
        if time.monotonic() > deadline:
            out(f"the local stack (pid {process.pid}) is still starting after {timeout:.0f} s; follow {log_path}, "
                "and `sightline local status`")
            return 1
        time.sleep(0.25)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(cannot read it: {error})"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
