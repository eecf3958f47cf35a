"""Training on several GPUs of one machine: DistributedDataParallel, one process per GPU, started by torchrun.

The container's entrypoint (``__main__``) is the launcher: with ``params.gpus`` above 1 it runs
``python -m torch.distributed.run --standalone --nproc-per-node N -m sightline_training <the job's flags>``
and forwards SIGTERM to it. Each process ("rank") finds itself from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), joins the process group (nccl on CUDA, gloo on a CPU) and trains its share of
every epoch's batches (``DistributedSampler``). Rank 0 alone fetches, evaluates, checkpoints, reports progress,
exports and publishes; the others wait for it at barriers. Rank 0 writes its exit code to the file the launcher
names, so the container exits as a single process would (2 invalid input, 143 SIGTERM, ...).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sightline_training.errors import Interrupted

log = logging.getLogger(__name__)

RESULT_ENV = "SIGHTLINE_DISTRIBUTED_RESULT"  # the folder where each rank writes {"exit_code", "reason"}
# Ranks wait at barriers while rank 0 evaluates and exports: long enough for a big validation split.
GROUP_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Context:
    """This process's place in the job: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """Whether any rank's ``flag`` is true; every rank must call it at the same point (once a step: a
        one-element all-reduce, on the GPU with nccl)."""
        if not self.enabled:
            return flag
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def mean(self, value: float) -> float:
        return sum(self.gather(float(value))) / self.world_size

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block, then the others (who then find its downloads cached)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def launched(environ: dict[str, str] | None = None) -> bool:
    """Whether this process is one of torchrun's ranks."""
    environ = os.environ if environ is None else environ
    return all(name in environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def context(environ: dict[str, str] | None = None) -> Context:
    environ = os.environ if environ is None else environ
    if not launched(environ):
        return Context()
    return Context(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ["LOCAL_RANK"]))


def start(ctx: Context, device_type: str) -> None:
    """Join the process group: nccl between GPUs, gloo on a CPU; each rank on its own GPU."""
    if not ctx.enabled:
        return
    import torch
    import torch.distributed as dist

    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    log.info("rank %d of %d joined the %s process group", ctx.rank, ctx.world_size, backend)


def stop(ctx: Context) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def collective_stop_check(requested: Callable[[], bool], check: Callable[[], None],
                          ctx: Context) -> Callable[[], None]:
    """``check`` that raises on every rank at the same step once any rank got SIGTERM (each rank gets it at a
    slightly different moment; a rank that stopped alone would leave the others waiting in an all-reduce)."""
    if not ctx.enabled:
        return check

    def collective() -> None:
        if ctx.any(requested()):
            check()  # raises on a rank that got the signal
            # This rank has not seen it yet, another has: stop with it.
            raise Interrupted("interrupted by SIGTERM (on another rank); the last completed epoch is "
                              "checkpointed, a retry resumes")

    return collective


def processes_for(gpus: int, device: str) -> int:
    """How many ranks to start for ``gpus``: one per GPU there is (at most ``gpus``); on a CPU ``gpus`` gloo
    processes (how the tests run it)."""
    if gpus <= 1:
        return 1
    if device == "cpu":
        return gpus
    import torch

    if not torch.cuda.is_available():
        return gpus
    available = torch.cuda.device_count()
    if available < gpus:
        log.warning("params.gpus is %d but this machine has %d GPUs: training on %d", gpus, available, available)
    return max(1, min(gpus, available))


def launch(job_argv: Sequence[str], processes: int, work_dir: Path) -> int:
    """Run the job as ``processes`` torchrun ranks; rank 0's exit code, or that of the rank that failed when
    rank 0 was stopped before it could report (143 after SIGTERM, 1 if no rank reported)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    result = work_dir / "rank-results"
    shutil.rmtree(result, ignore_errors=True)
    result.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
               f"--nproc-per-node={processes}", "-m", "sightline_training", *job_argv]
    environment = {**os.environ, RESULT_ENV: str(result), "PYTHONPATH": _python_path()}
    log.info("starting %d training processes: %s", processes, " ".join(command))
    child = subprocess.Popen(command, env=environment)
    terminated = []

    def forward(signum: int, frame: object) -> None:
        # Batch and Spot send SIGTERM to the container's first process only: pass it on to torchrun, which
        # passes it to every rank; they stop together at the next step (collective_stop_check).
        terminated.append(signum)
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    reported = _chosen_report(result)
    if reported is not None:
        if reported.get("reason"):
            print(reported["reason"], file=sys.stderr, flush=True)
        return int(reported["exit_code"])
    if terminated:
        return 143
    if code != 0:
        print(f"the training processes failed (torchrun exit code {code}); see the log", file=sys.stderr, flush=True)
        return 1
    return 0


def report_result(ctx: Context, exit_code: int, reason: str | None) -> None:
    """Each rank tells the launcher how it ended (renamed into place: a rank killed mid-write leaves nothing)."""
    path = os.environ.get(RESULT_ENV)
    if ctx.enabled and path:
        written = Path(path) / f"rank{ctx.rank}.json.partial"
        written.write_text(json.dumps({"exit_code": exit_code, "reason": reason}))
        os.replace(written, written.with_suffix(""))


def _chosen_report(folder: Path) -> dict[str, Any] | None:
    """The lowest rank's report of a failure of its own (not 0, not 143: torchrun stops the other ranks with
    SIGTERM once one fails, so theirs say "interrupted", or nothing when they were killed first); else rank 0's."""
    reports = {int(path.stem.removeprefix("rank")): json.loads(path.read_text()) for path in folder.glob("rank*.json")}
    failed = [reports[rank] for rank in sorted(reports) if reports[rank].get("exit_code") not in (0, 143)]
    return failed[0] if failed else reports.get(0)


def _python_path() -> str:
    # The ranks import the same packages as this process, wherever they were found (a checkout, the image).
    import sightline
    import sightline_training

    roots = [str(Path(package.__file__).resolve().parents[1]) for package in (sightline, sightline_training)]
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join(dict.fromkeys(roots + ([existing] if existing else [])))


def wrap(model: Any, device: Any) -> Any:
    """``model`` in DistributedDataParallel, which all-reduces gradients in the backward pass and hands rank 0's
    buffers (BatchNorm's statistics, recomputed by rank 0 alone) to every rank before each forward."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def replicas_agree(model: Any, ctx: Context) -> bool:
    """Whether every rank holds the same parameters (a digest of their bytes; buffers may differ until the
    next forward hands rank 0's out)."""
    import hashlib

    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    digests = ctx.gather(digest.hexdigest())
    if len(set(digests)) > 1:
        log.error("parameter digests by rank differ: %s", digests)
    return len(set(digests)) == 1
