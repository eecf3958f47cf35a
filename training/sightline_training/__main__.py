"""``python -m sightline_training``: the Batch container's entrypoint.

Batch passes the job through the environment (docs/architecture.md, "Training job"); every variable has a
flag of the same meaning for local debugging, and a flag wins over its variable. Exit codes: 0 published,
1 failed, 2 invalid input (a retry cannot help), 143 interrupted by SIGTERM (a retry resumes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from sightline.contract import JobEnvironment
from sightline_training import distributed
from sightline_training.config import JobConfig
from sightline_training.errors import InvalidInput, JobFailed, one_line

log = logging.getLogger("sightline_training")

CHANNELS_LAST_ENV = "SIGHTLINE_CHANNELS_LAST"

ENVIRONMENT = {
    "manifest": JobEnvironment.MANIFEST_URI,
    "output": JobEnvironment.OUTPUT_URI,
    "checkpoint": JobEnvironment.CHECKPOINT_URI,
    "template": JobEnvironment.TEMPLATE,
    "params": JobEnvironment.PARAMS,
    "weights_uri": JobEnvironment.WEIGHTS_URI,
}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sightline_training",
        description="Train one Sightline model version from a manifest and publish model.onnx, labels.json "
                    "and metrics.json. Each flag overrides the environment variable in brackets.",
        epilog="exit codes: 0 published, 1 failed, 2 invalid input (retrying cannot help), "
               "143 stopped by SIGTERM after checkpointing (retrying resumes)",
    )
    parser.add_argument("--manifest", help="manifest URI (s3://, file:// or path) [SIGHTLINE_MANIFEST_URI]")
    parser.add_argument("--output", help="where model.onnx, labels.json, metrics.json go [SIGHTLINE_OUTPUT_URI]")
    parser.add_argument("--checkpoint", help="where checkpoint.pt is kept and resumed from [SIGHTLINE_CHECKPOINT_URI]")
    parser.add_argument("--template", help="template id; default: the task's default [SIGHTLINE_TEMPLATE]")
    parser.add_argument("--params", help='JSON object, e.g. \'{"epochs": 5}\' [SIGHTLINE_PARAMS]')
    parser.add_argument("--weights-uri", help="s3:// prefix holding torchvision's weight files under their own "
                        "names, tried before the torch cache [SIGHTLINE_WEIGHTS_URI]")
    parser.add_argument("--work-dir", type=Path, help="local scratch: image cache, checkpoint, artifacts "
                        "(default: <tmp>/sightline-training/<hash of the output URI>)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="data loader worker processes (0: load in the main process)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", choices=("auto", "1", "0"),
                        help="channels_last memory format: auto (classifiers on a GPU), 1 always, 0 never "
                             "[SIGHTLINE_CHANNELS_LAST]")
    return parser


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> JobConfig:
    """The job from flags and environment; raises :class:`InvalidInput` for what is missing or malformed."""
    environ = os.environ if environ is None else environ
    args = argument_parser().parse_args(argv)
    values = {name: getattr(args, name) or environ.get(variable) or None for name, variable in ENVIRONMENT.items()}
    for name in ("manifest", "output"):
        if not values[name]:
            raise InvalidInput(f"{ENVIRONMENT[name]} is not set (or pass --{name})")
    params = {}
    if values["params"]:
        try:
            params = json.loads(values["params"])
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{ENVIRONMENT['params']} is not valid JSON: {error}") from None
    if args.workers < 0:
        raise InvalidInput("--workers must be 0 or more")
    channels_last = args.channels_last or environ.get(CHANNELS_LAST_ENV) or "auto"
    if channels_last not in ("auto", "1", "0"):
        raise InvalidInput(f"{CHANNELS_LAST_ENV} must be auto, 1 or 0, got {channels_last!r}")
    return JobConfig(
        manifest_uri=values["manifest"],
        output_uri=values["output"],
        checkpoint_uri=values["checkpoint"],
        template_id=values["template"],
        params=params,
        work_dir=args.work_dir or default_work_dir(values["output"]),
        workers=args.workers,
        device=args.device,
        seed=args.seed,
        weights_uri=values["weights_uri"],
        channels_last=channels_last,
    )


def job_argv(config: JobConfig) -> list[str]:
    """Flags that give a rank exactly ``config`` (torchrun's ranks are started with them)."""
    argv = ["--manifest", config.manifest_uri, "--output", config.output_uri,
            "--params", json.dumps(config.params), "--work-dir", str(config.work_dir),
            "--workers", str(config.workers), "--device", config.device, "--seed", str(config.seed),
            "--channels-last", config.channels_last]
    for flag, value in (("--checkpoint", config.checkpoint_uri), ("--template", config.template_id),
                        ("--weights-uri", config.weights_uri)):
        if value:
            argv += [flag, value]
    return argv


def requested_gpus(params: object) -> int:
    """``params.gpus`` when it is a whole number above 1, else 1 (the template's validation reports bad ones)."""
    gpus = params.get("gpus") if isinstance(params, dict) else None
    return gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and 1 < gpus <= 8 else 1


def default_work_dir(output_uri: str) -> Path:
    # One folder per model version: jobs that share a machine (the local stack) never share scratch files.
    return Path(tempfile.gettempdir()) / "sightline-training" / hashlib.sha256(output_uri.encode()).hexdigest()[:16]


def _log_safe(value: str) -> str:
    """``value`` fit for a logging format string: printable, ``%`` escaped, at most 128 characters."""
    return "".join(c for c in value[:128] if c.isprintable()).replace("%", "%%")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the job; the exit code, with the one-line reason on stderr when it is not 0."""
    ctx = distributed.context()
    if not logging.getLogger().handlers:
        # The log goes to stdout (CloudWatch); stderr carries only the failure reason. Ranks say which they are.
        rank = f"rank {ctx.rank} " if ctx.enabled else ""
        # The workflow's correlation id (the execution's name) joins these lines to the API's and the steps'.
        correlation = (os.environ if environ is None else environ).get(JobEnvironment.CORRELATION_ID, "")
        tag = f"[{_log_safe(correlation)}] " if correlation else ""
        logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                            format=f"%(asctime)s %(levelname)s {tag}{rank}%(name)s: %(message)s")
    code, reason = 0, None
    try:
        config = parse_config(argv, environ)
        if not ctx.enabled and requested_gpus(config.params) > 1:
            # The launcher: one process per GPU through torchrun, each running this entrypoint as a rank.
            processes = distributed.processes_for(requested_gpus(config.params), config.device)
            if processes > 1:
                return distributed.launch(job_argv(config), processes, config.work_dir)
        # Imported here so that --help and bad flags answer without loading torch.
        from sightline_training.train import run_job

        run_job(config)
    except JobFailed as error:
        code, reason = error.exit_code, one_line(error)
        log.error("job failed: %s", reason)
    except Exception as error:
        code, reason = 1, f"{type(error).__name__}: {one_line(error)}"
        log.exception("job failed")
    finally:
        distributed.stop(ctx)
    if reason is not None:
        print(reason, file=sys.stderr, flush=True)
    distributed.report_result(ctx, code, reason)
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["evaluate"]:  # the evaluation job definition's Command (sightline_training.evaluate)
        from sightline_training.evaluate import main as evaluate

        sys.exit(evaluate(sys.argv[2:]))
    sys.exit(main())
