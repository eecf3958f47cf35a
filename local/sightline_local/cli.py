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

from sightline_local import keys_cli
from sightline_local.stack import LocalStack, StackConfig


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

Press Ctrl-C to stop.
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
    up.add_argument("--state-dir", type=Path, default=None, help="logs and caches (default: .sightline/)")
    up.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    keys_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "keys":
        return keys_cli.run(args)

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("werkzeug", "botocore", "urllib3", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not is_loopback(args.host) and not args.expose:
        print(f"sightline: refusing to listen on {args.host}: the local stack's AWS endpoint has no authentication, so "
              "anyone who can reach it could read and change all of it. Use the default (127.0.0.1), or add "
              "--expose if this machine's network is yours alone.", file=sys.stderr)
        return 2
    for port, flag in ((args.aws_port, "--aws-port"), (args.api_port, "--api-port")):
        if not port_is_free(args.host, port):
            print(f"sightline: {args.host}:{port} is in use (another local stack?); choose another with {flag}", file=sys.stderr)
            return 2
    stack = LocalStack(StackConfig(host=args.host, api_port=args.api_port, aws_port=args.aws_port, state_dir=args.state_dir))
    stack.start()
    print(banner(stack, write_key_file(stack), show_key=sys.stdout.isatty()), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    if not args.no_demo:
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
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
