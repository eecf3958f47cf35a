"""Training speed: images per second of Sightline's training step against a plain fp32 loop, per template.

    .venv/bin/python benchmarks/train.py [--templates mobilenet_v3_small,efficientnet_b0] [--steps 5] [--json]

For each template, one randomly initialised model (deep-copied for each loop), one set of generated batches
(random pixels; for detectors one to three random boxes per image) and one batch size serve both loops, in this
process:

- ``plain``: fp32, the default memory layout, ``loss.backward()`` and ``optimizer.step()``: the loop one writes first;
- ``sightline``: ``engine.train_one_epoch`` as a job runs it, with the precision and memory format
  ``precision.choose`` picks on this device (``--precision``; on CUDA ``auto`` is bf16 autocast where the GPU has
  it, fp16 with loss scaling elsewhere, and channels_last for classifiers).

Both run ``--warmup`` steps untimed, then ``--steps`` timed steps ``--rounds`` times, step by step in turn (each
loop first every other step); every timed step counts. On CUDA a step is wall-clock time, synchronised around it;
on a CPU it is this process's CPU time with one torch thread (``--threads``), so the figure holds on a machine
shared with other work. The figure is the ratio ``sightline / plain`` (the issue's target: at least 1.5 on
a GPU). On a CPU both loops compute in fp32 with the same layout, so the ratio is about 1: what this shows there
is that the job's loop adds nothing. Data loading is not measured (batches are in memory, pinned on CUDA).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "layers" / "sightline", ROOT / "training"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from sightline.contract import DETECTION, MULTILABEL  # noqa: E402
from sightline.templates import TEMPLATES, TrainingTemplate  # noqa: E402
from sightline_training import engine, models, precision as precisions  # noqa: E402

DEFAULT_TEMPLATES = "mobilenet_v3_small,efficientnet_b0,ssdlite320_mobilenet_v3_large"
CLASSES = 4


@dataclass
class Figure:
    template: str
    device: str
    batch_size: int
    image_size: int
    steps: int
    precision: str
    memory_format: str
    plain_images_per_second: float
    sightline_images_per_second: float

    @property
    def ratio(self) -> float:
        return self.sightline_images_per_second / self.plain_images_per_second


def batches(template: TrainingTemplate, count: int, batch_size: int, image_size: int,
            generator: torch.Generator, pin: bool) -> list:
    """``count`` generated batches as the job's data loaders give them."""
    out = []
    for _ in range(count):
        if template.task == DETECTION:
            images = [torch.rand(3, image_size, image_size, generator=generator) for _ in range(batch_size)]
            targets = []
            for _ in range(batch_size):
                boxes = []
                for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
                    x, y = (torch.rand(2, generator=generator) * image_size * 0.6).tolist()
                    w, h = (torch.rand(2, generator=generator) * image_size * 0.3 + image_size * 0.1).tolist()
                    boxes.append([x, y, x + w, y + h])
                targets.append({"boxes": torch.tensor(boxes),
                                "labels": torch.randint(1, CLASSES + 1, (len(boxes),), generator=generator)})
            out.append((images, targets))
            continue
        images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
        if template.task == MULTILABEL:
            targets = (torch.rand(batch_size, CLASSES, generator=generator) > 0.5).float()
        else:
            targets = torch.randint(0, CLASSES, (batch_size,), generator=generator)
        out.append((images.pin_memory(), targets.pin_memory()) if pin else (images, targets))
    return out


def plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, task: str,
               device: torch.device) -> Callable[[object, object], None]:
    def step(images, targets) -> None:
        if task == DETECTION:
            images = [image.to(device) for image in images]
            targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
            loss = sum(model(images, targets).values())
        else:
            images, targets = images.to(device), targets.to(device)
            logits = model(images)
            loss = (F.binary_cross_entropy_with_logits(logits, targets) if task == MULTILABEL
                    else F.cross_entropy(logits, targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(run: Callable[[], None], device: torch.device) -> float:
    """Seconds ``run`` took: wall-clock on CUDA (synchronised); on a CPU this process's CPU time, which other
    processes on a shared machine do not inflate (one torch thread by default, so no thread spins waiting)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = clock()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - started


def measure(template: TrainingTemplate, device: torch.device, batch_size: int, image_size: int, steps: int,
            warmup: int, rounds: int, requested: str) -> Figure:
    torch.manual_seed(0)
    base = models.build_model(template, CLASSES, image_size)
    data = batches(template, warmup + steps, batch_size, image_size, torch.Generator().manual_seed(0),
                   pin=device.type == "cuda")
    warm, timed_batches = data[:warmup], data[warmup:]
    chosen = precisions.choose(requested, device, template.task)

    plain_model = copy.deepcopy(base).to(device)
    plain_optimizer = torch.optim.AdamW(plain_model.parameters(), lr=1e-4)
    step = plain_step(plain_model.train(), plain_optimizer, template.task, device)

    fast_model = copy.deepcopy(base).to(device, memory_format=chosen.memory_format)
    fast_optimizer = torch.optim.AdamW(fast_model.parameters(), lr=1e-4)
    scaler = chosen.grad_scaler(device)

    def plain(run_batches: list) -> Callable[[], None]:
        return lambda: [step(images, targets) for images, targets in run_batches]

    def sightline(run_batches: list) -> Callable[[], None]:
        return lambda: engine.train_one_epoch(fast_model, fast_optimizer, run_batches, device, 0, scaler,
                                              template.task, lambda: None, print_freq=10**9, precision=chosen)

    if warm:
        timed(plain(warm), device)
        timed(sightline(warm), device)
    # Step by step, the two loops in turn (each first every other step): a shared machine's bursts of load, and
    # whatever one loop leaves warm, fall on both alike. Every timed step of every round counts.
    plain_seconds, fast_seconds = 0.0, 0.0
    order = [(plain, "plain"), (sightline, "sightline")]
    for round_index in range(rounds):
        for index, batch in enumerate(timed_batches):
            for loop, name in order if (round_index + index) % 2 == 0 else reversed(order):
                seconds = timed(loop([batch]), device)
                if name == "plain":
                    plain_seconds += seconds
                else:
                    fast_seconds += seconds
    images = rounds * steps * batch_size
    return Figure(template.id, device.type, batch_size, image_size, steps, chosen.name,
                  chosen.to_dict()["memory_format"], round(images / plain_seconds, 2), round(images / fast_seconds, 2))


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", default=DEFAULT_TEMPLATES, help=f"comma-separated (default {DEFAULT_TEMPLATES})")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 3 on a CPU, 30 "
                        "on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 CPU, 10 CUDA)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 on a CPU; on CUDA 64 for "
                        "classifiers, 16 for detectors")
    parser.add_argument("--image-size", type=int, default=None, help="default: the template's on CUDA; on a CPU "
                        "64 for classifiers, 128 for detectors (kept short)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default on a CPU: 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per template instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    steps = args.steps or (30 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    names = [name.strip() for name in args.templates.split(",") if name.strip()]
    unknown = [name for name in names if name not in TEMPLATES]
    if unknown:
        print(f"unknown templates: {', '.join(unknown)} (available: {', '.join(sorted(TEMPLATES))})",
              file=sys.stderr)
        return 2
    machine = (torch.cuda.get_device_name(device) if cuda else
               f"{platform.machine()} CPU, {torch.get_num_threads()} threads, images per CPU-second of this process")
    if not args.json:
        print(f"# {machine}; torch {torch.__version__}; {steps} timed steps x {args.rounds} rounds after {warmup}")
        print(f"{'template':34} {'batch':>5} {'size':>4} {'precision':>9} {'layout':>14} {'plain img/s':>11} "
              f"{'sightline img/s':>15} {'ratio':>6}")
    for name in names:
        template = TEMPLATES[name]
        detector = template.task == DETECTION
        batch_size = args.batch_size or ((16 if detector else 64) if cuda else 8)
        own_size = int(next(p.default or p.base for p in template.params if p.name == "image_size"))
        image_size = args.image_size or (own_size if cuda else (128 if detector else 64))
        figure = measure(template, device, batch_size, image_size, steps, warmup, args.rounds, args.precision)
        if args.json:
            print(json.dumps({**asdict(figure), "ratio": round(figure.ratio, 3), "machine": machine}))
        else:
            print(f"{figure.template:34} {figure.batch_size:>5} {figure.image_size:>4} {figure.precision:>9} "
                  f"{figure.memory_format:>14} {figure.plain_images_per_second:>11.1f} "
                  f"{figure.sightline_images_per_second:>15.1f} {figure.ratio:>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
