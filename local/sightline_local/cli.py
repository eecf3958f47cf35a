"""``sightline local up``: run the whole of Sightline on this machine."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from sightline_local import aws_deploy, control, snapshot
from sightline_local.stack import REPO_ROOT, LocalStack, StackConfig


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def write_key_file(stack: LocalStack) -> Path:
    """The API key in ``<state dir>/api-key``, readable by this user only (mode 0600 from its creation)."""
    path = stack.state_dir / "api-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a file someone else created (or with wider modes) is not reused
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(stack.api_key + "\n")
    return path


def banner(stack: LocalStack, key_file: Path, show_key: bool) -> str:
    """What ``local up`` prints. The key itself only on a terminal: output sent to a file or a log may be read by
    other users of the machine, so there the key is referred to by its file (mode 0600)."""
    api = stack.config.api_url
    data_bucket = stack.output("DataBucketName")
    key = stack.api_key if show_key else f"$(cat {key_file})"
    return f"""
Sightline local stack is up.

  API (API Gateway front)   {api}/v1
  web console               {api}/console/  (sign in with the API key)
  AWS endpoint (moto)       {stack.config.endpoint}
  data bucket               s3://{data_bucket}  (upload datasets under datasets/<name>/)
  artifact bucket           s3://{stack.output('ArtifactBucketName')}
  table                     {stack.output('TableName')}
  training state machine    {stack.output('TrainingStateMachineArn')}
  API key                   {stack.api_key if show_key else "(not shown: output is not a terminal)"}, also in {key_file} (mode 0600)

Try it:
  export AWS_ENDPOINT_URL={stack.config.endpoint} AWS_ACCESS_KEY_ID=sightline-local AWS_SECRET_ACCESS_KEY=sightline-local AWS_DEFAULT_REGION={stack.config.region}
  aws s3 cp my-classes.zip s3://{data_bucket}/datasets/pets/my-classes.zip
  curl -H "x-api-key: {key}" {api}/v1/datasets/pets
  curl -H "x-api-key: {key}" -H 'content-type: application/json' \\
       -d '{{"name": "pets", "task": "classification", "datasets": ["pets"]}}' {api}/v1/models
  curl -H "x-api-key: {key}" -H 'content-type: image/jpeg' --data-binary @cat.jpg {api}/v1/models/<model_id>/predict

Press Ctrl-C to stop: the buckets and the table are kept in {stack.state_dir / snapshot.DIRECTORY} and come back at
the next `sightline local up` (`--fresh` starts empty).
"""


def port_is_free(host: str, port: int) -> bool:
    """Whether the stack's servers could bind ``host:port`` now: nothing listens there."""
    with socket.socket() as probe:
        # Bind as the servers do (http.server and werkzeug set SO_REUSEADDR): connections of a stack that
        # just stopped linger in TIME_WAIT for a minute and must not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sightline", description="Sightline: self-hosted custom vision")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="the embedded local stack")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser("up", help="start the local stack in the foreground")
    up.add_argument("--host", default="127.0.0.1",
                    help="address to listen on; anything but loopback needs --expose")
    up.add_argument("--expose", action="store_true",
                    help="allow a --host other than loopback: the AWS endpoint (moto) has no authentication, so "
                         "anyone who can reach it can read and change everything")
    up.add_argument("--api-port", type=int, default=3000)
    up.add_argument("--aws-port", type=int, default=4566)
    up.add_argument("--no-demo", action="store_true", help="skip the demo dataset, training run and prediction")
    up.add_argument("--demo-epochs", type=int, default=3)
    up.add_argument("--state-dir", type=Path, default=None,
                    help="the snapshot, logs and caches (default: .sightline/)")
    up.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    up.add_argument("--fresh", action="store_true",
                    help="start empty: set the snapshot of the last run aside (in <state dir>/snapshot.discarded)")
    up.add_argument("--detach", "--background", action="store_true",
                    help="run in the background (pid and log file in the state dir); `local down` stops it")
    for name, text in (("status", "whether a local stack runs from the state dir, its URLs and contents"),
                       ("down", "stop the local stack running from the state dir, writing its snapshot")):
        command = local_commands.add_parser(name, help=text)
        command.add_argument("--state-dir", type=Path, default=None, help="(default: .sightline/)")
        if name == "down":
            command.add_argument("--timeout", type=float, default=120.0,
                                 help="seconds to wait for it to stop (default 120)")
    aws_deploy.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "deploy":
        return aws_deploy.run(args)
    state_dir = (args.state_dir or REPO_ROOT / ".sightline").resolve()
    try:
        if args.local_command == "status":
            code, text = control.status(state_dir)
            print(text)
            return code
        if args.local_command == "down":
            return control.down(state_dir, args.timeout)
        return up_command(args, state_dir)
    except (control.ControlError, snapshot.SnapshotError) as error:
        print(f"sightline: {error}", file=sys.stderr)
        return 2


def up_command(args: argparse.Namespace, state_dir: Path) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("werkzeug", "botocore", "urllib3", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not is_loopback(args.host) and not args.expose:
        print(f"sightline: refusing to listen on {args.host}: the local stack's AWS endpoint has no authentication, so "
              "anyone who can reach it could read and change all of it. Use the default (127.0.0.1), or add "
              "--expose if this machine's network is yours alone.", file=sys.stderr)
        return 2
    found = control.read_pid_file(state_dir)
    if found is not None and found.alive:
        print(f"sightline: a local stack already runs from {state_dir} (pid {found.pid}, "
              f"{found.record.get('api_url', found.record.get('state'))}); `sightline local down` stops it",
              file=sys.stderr)
        return 2
    if found is not None:
        control.pid_path(state_dir).unlink(missing_ok=True)
        print(f"sightline: removed a stale pid file (pid {found.pid} is gone: the last stack did not stop cleanly, so "
              "it comes back as of its last snapshot)", flush=True)
    for port, flag in ((args.aws_port, "--aws-port"), (args.api_port, "--api-port")):
        if not port_is_free(args.host, port):
            print(f"sightline: {args.host}:{port} is in use (another local stack?); choose another with {flag}", file=sys.stderr)
            return 2
    if args.detach:
        if args.fresh:
            print(discarded_message(snapshot.discard(state_dir)), flush=True)
        else:
            snapshot.load(state_dir)  # refused here, with its message, rather than in the background log
        return control.detach(state_dir, background_arguments(args, state_dir))

    control.write_pid_file(state_dir, control.STARTING)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stack = LocalStack(StackConfig(host=args.host, api_port=args.api_port, aws_port=args.aws_port,
                                       state_dir=state_dir, fresh=args.fresh))
    except BaseException:
        control.remove_pid_file(state_dir)
        raise
    try:
        stack.start()
    except BaseException:
        stack.stop()  # no snapshot is written: the writer exists only once the restore succeeded
        control.remove_pid_file(state_dir)
        raise
    if args.fresh:
        print(discarded_message(stack.discarded), flush=True)
    key_file = write_key_file(stack)
    print(banner(stack, key_file, show_key=sys.stdout.isatty()) + restored_message(stack), flush=True)
    control.write_pid_file(state_dir, control.RUNNING, started_at=control.now(), api_url=stack.config.api_url,
                           endpoint=stack.config.endpoint, region=stack.config.region,
                           table=stack.output("TableName"), key_file=str(key_file))
    if not args.no_demo and stack.restored is not None:
        print("The demo runs only on a stack that starts empty (this one was restored; --fresh starts empty).",
              flush=True)
    elif not args.no_demo:
        from sightline_local.demo import run_demo

        def demo() -> None:
            try:
                run_demo(stack, epochs=args.demo_epochs)
            except Exception as error:  # noqa: BLE001 - the stack stays up for the user
                logging.getLogger("sightline.local.demo").error("demo failed: %s", error)

        threading.Thread(target=demo, name="demo", daemon=True).start()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping: writing the snapshot ...", flush=True)
        stack.stop()
        control.remove_pid_file(state_dir)
    if stack.last_snapshot is not None:
        print(f"stopped. Snapshot in {state_dir / snapshot.DIRECTORY}: {stack.last_snapshot.describe()}, written in "
              f"{stack.last_snapshot.seconds:.1f} s", flush=True)
    else:
        print("stopped. The snapshot could not be written (see the log above); the previous one is kept", flush=True)
    return 0


def background_arguments(args: argparse.Namespace, state_dir: Path) -> list[str]:
    """``local up``'s arguments for the background process (never --detach nor --fresh: done here)."""
    arguments = ["--host", args.host, "--api-port", str(args.api_port), "--aws-port", str(args.aws_port),
                 "--state-dir", str(state_dir), "--log-level", args.log_level, "--demo-epochs", str(args.demo_epochs)]
    return arguments + [flag for flag, given in (("--expose", args.expose), ("--no-demo", args.no_demo)) if given]


def discarded_message(discarded: Path | None) -> str:
    if discarded is None:
        return "--fresh: there was no snapshot to discard; starting empty"
    return f"--fresh: the previous snapshot was discarded (set aside in {discarded} until the next --fresh); starting empty"


def restored_message(stack: LocalStack) -> str:
    restored = stack.restored
    if restored is None:
        return "Started empty (no snapshot in the state dir).\n"
    lines = [f"Restored the snapshot of {restored.written_at} in {restored.seconds:.1f} s: {restored.describe()}."]
    lines += [f"  - {note}" for note in restored.notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
