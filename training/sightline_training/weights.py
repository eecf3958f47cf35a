"""Where a template's starting weights come from, and the build-time download of every template's weights.

In order (docs/architecture.md, "Starting weights"):

1. ``params.weights_uri``: the user's ``s3://`` state dict or Sightline ``checkpoint.pt`` of the same
   architecture. Given but unreadable or of another architecture, the job fails (exit 2): the user asked for it.
2. The deployment's ``WeightsUri`` (``SIGHTLINE_WEIGHTS_URI``): an ``s3://`` prefix holding torchvision's
   weight files under their own names (``<prefix>/mobilenet_v3_small-047dcff4.pth``).
3. The torch cache, ``$TORCH_HOME/hub/checkpoints/<torchvision's file name>``: in the training image, filled at
   ``docker build`` by ``python -m sightline_training.weights``; elsewhere the machine's own cache.
4. A download from torchvision's URL into that cache, only where ``SIGHTLINE_ALLOW_WEIGHT_DOWNLOAD=1`` (never
   by default: the container has no network at run time, and tests must not reach for one).

With ``pretrained: false`` and no ``weights_uri``, or when nothing above has the weights, the model keeps its
random initialisation; the latter is logged as a warning. Either way metrics.json records ``weights``:
``{"source": "s3" | "cache" | "download" | "none", "name"?, "uri"?, "reason"?}``. The class-specific head
(``models.Architecture.head``) is never loaded: it is new for the dataset's classes.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import torch
from botocore.exceptions import BotoCoreError, ClientError
from torch import nn
from torchvision.models import get_weight

from sightline.templates import TEMPLATES, TrainingTemplate

from sightline_training import storage
from sightline_training.errors import InvalidInput
from sightline_training.models import Architecture, architecture, build_model

log = logging.getLogger(__name__)

ALLOW_DOWNLOAD = "SIGHTLINE_ALLOW_WEIGHT_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 15.0  # per connection attempt and per read: an offline machine gives up quickly
# torch.hub's rule: a file name "<name>-<hex>.<ext>" names the first hex digits of the file's SHA-256.
HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")

S3, CACHE, DOWNLOAD, NONE = "s3", "cache", "download", "none"


class WeightsUnusable(Exception):
    """A weights file that is not a state dict of the template's architecture."""


@dataclass(frozen=True)
class Found:
    state: dict[str, torch.Tensor] | None  # None: no source had usable weights
    record: dict[str, Any]


def file_name(template: TrainingTemplate) -> str:
    """torchvision's file name of the template's published weights (the basename of the weight enum's URL)."""
    return PurePosixPath(urlparse(get_weight(template.weights.name).url).path).name


def cache_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (torch.hub's own rule)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ALLOW_DOWNLOAD, "").strip().lower() in ("1", "true", "yes")


# ---------------------------------------------------------------- the model a job starts from


def starting_model(template: TrainingTemplate, num_classes: int, image_size: int, params: Mapping[str, Any],
                   deployment_uri: str | None = None,
                   checkpoint: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model training starts from and where its weights came from (metrics.json ``weights``).

    ``checkpoint``: the state the job resumes from. Its ``weights`` record is kept, the model is laid out as
    that job's was, its tensors are about to replace the initial ones, and nothing is fetched.
    """
    if checkpoint is not None:
        record = dict(checkpoint.get("weights") or {"source": NONE, "reason": "resumed from a checkpoint that "
                                                                              "does not record its weights"})
        return build_model(template, num_classes, image_size, pretrained=record["source"] != NONE), record
    if not params.get("weights_uri") and not params.get("pretrained", True):
        return build_model(template, num_classes, image_size), {"source": NONE, "reason": "pretrained is false"}

    layout = architecture(template)
    model = build_model(template, num_classes, image_size, pretrained=True)
    found = find_weights(template, params, deployment_uri, fits=lambda state: load_backbone(model, state, layout))
    if found.state is None:
        log.warning("training %s from scratch: %s", template.id, found.record["reason"])
        if layout.frozen_norm:  # laid out for weights that did not come
            model = build_model(template, num_classes, image_size)
        return model, found.record
    log.info("starting from %s weights %s (the %s head is new)", found.record["source"],
             found.record.get("uri") or found.record.get("name"), template.architecture)
    return model, found.record


def find_weights(template: TrainingTemplate, params: Mapping[str, Any], deployment_uri: str | None = None,
                 fits: Callable[[dict[str, torch.Tensor]], Any] | None = None) -> Found:
    """The first of the sources (module docstring) whose weights ``fits`` accepts (it raises
    :class:`WeightsUnusable` for those it does not); ``state`` None when there is none, with the reasons."""
    fits = fits or (lambda state: None)
    user_uri = params.get("weights_uri")
    if user_uri:
        try:
            state = read_state_dict(user_uri)
            fits(state)
            return Found(state, {"source": S3, "uri": user_uri})
        except storage.ObjectNotFound:
            raise InvalidInput(f"params.weights_uri {user_uri}: no such object") from None
        except (ClientError, BotoCoreError, WeightsUnusable, OSError) as error:
            raise InvalidInput(f"params.weights_uri {user_uri}: {_short(error)}") from None
    if not params.get("pretrained", True):
        return Found(None, {"source": NONE, "reason": "pretrained is false"})

    name, file = template.weights.name, file_name(template)
    missed: list[str] = []

    def usable(read: Callable[[], dict[str, torch.Tensor]], where: str) -> dict[str, torch.Tensor] | None:
        try:
            state = read()
            fits(state)
            return state
        except storage.ObjectNotFound:
            missed.append(f"not in {where}")
        except (ClientError, BotoCoreError, WeightsUnusable, OSError, ValueError, HTTPException) as error:
            missed.append(f"{where}: {_short(error)}")
        return None

    if deployment_uri:
        uri = storage.join(deployment_uri, file)
        if (state := usable(lambda: read_state_dict(uri), uri)) is not None:
            return Found(state, {"source": S3, "name": name, "uri": uri})
    path = cache_dir() / file
    if not path.is_file():
        missed.append(f"not in the torch cache {path.parent}")
    elif (state := usable(lambda: _load(path), str(path))) is not None:
        return Found(state, {"source": CACHE, "name": name, "uri": path.as_uri()})
    if not downloads_allowed():
        missed.append(f"downloads are off ({ALLOW_DOWNLOAD}=1 allows them)")
        return Found(None, {"source": NONE, "name": name, "reason": "; ".join(missed)})
    url = get_weight(name).url
    started = time.monotonic()

    def fetched() -> dict[str, torch.Tensor]:
        download(url, path)
        return _load(path)

    if (state := usable(fetched, f"download from {url}")) is not None:
        return Found(state, {"source": DOWNLOAD, "name": name, "uri": url})
    missed[-1] += f" (gave up after {time.monotonic() - started:.1f} s)"
    return Found(None, {"source": NONE, "name": name, "reason": "; ".join(missed)})


def read_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """The tensors of a state dict (or of a Sightline checkpoint's ``model``) stored at ``uri``."""
    with tempfile.TemporaryDirectory(prefix="sightline-weights-") as folder:
        path = Path(folder) / "weights.pt"
        storage.download_file(uri, path)
        return _load(path)


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        # Tensors and containers only: weights_only refuses a pickle that would run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise WeightsUnusable(f"not a PyTorch weights file ({type(error).__name__}: "
                              f"{_short(str(error).splitlines()[0] if str(error) else error, 100)})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a Sightline checkpoint.pt (or torchvision's references' checkpoints)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnusable("not a state dict (a mapping of names to tensors)")
    return state


def load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], layout: Architecture) -> int:
    """Copy every tensor of ``model`` but the class-specific head from ``state``; the number copied.

    Every such tensor must be in ``state`` with the same shape (BatchNorm's ``num_batches_tracked`` aside:
    FrozenBatchNorm2d has none), or :class:`WeightsUnusable` says how many are not.
    """
    own = model.state_dict()
    wanted = [key for key in own if not layout.is_head(key)]
    missing = [key for key in wanted if key not in state and not key.endswith("num_batches_tracked")]
    reshaped = [key for key in wanted if key in state and state[key].shape != own[key].shape]
    if missing or reshaped:
        problems = [f"{len(found)} tensors {what}, e.g. {found[0]}"
                    for found, what in ((missing, "missing"), (reshaped, "of another shape")) if found]
        raise WeightsUnusable("; ".join(problems))
    tensors = {key: state[key] for key in wanted if key in state}
    model.load_state_dict(tensors, strict=False)
    return len(tensors)


def _short(error: object, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- downloads (run time when allowed; docker build)


def download(url: str, path: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """``url`` to ``path`` through a partial file, checking the SHA-256 prefix in the name as torch.hub does.

    Unlike ``torch.hub.download_url_to_file``, every connection and read has a ``timeout``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # never taken for the file: the name has no hash
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as handle:  # noqa: S310
            while chunk := response.read(1 << 20):
                handle.write(chunk)
                digest.update(chunk)
        expected = HASH_PREFIX.search(path.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise ValueError(f"SHA-256 {digest.hexdigest()[:16]}... does not start with {expected.group(1)}")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def fetch_all(templates: Iterable[TrainingTemplate] | None = None,
              fetch: Callable[[str, Path], None] | None = None) -> list[Path]:
    """Every template's published weights in the torch cache (``$TORCH_HOME``), each file fetched (by default
    with :func:`download`) once and only when missing; the files. A failed download raises: an image without
    its weights must not be built."""
    fetch = fetch or download
    files: dict[Path, str] = {}
    for template in TEMPLATES.values() if templates is None else templates:
        files.setdefault(cache_dir() / file_name(template), get_weight(template.weights.name).url)
    for path, url in files.items():
        if path.is_file():
            log.info("%s: cached", path.name)
            continue
        started = time.monotonic()
        fetch(url, path)
        log.info("%s: %.1f MB in %.1f s", path.name, path.stat().st_size / 1e6, time.monotonic() - started)
    return list(files)


def check_all(templates: Iterable[TrainingTemplate] | None = None) -> None:
    """Build every template from the cache alone (no S3, no download) and fail unless each loads from it."""
    for template in TEMPLATES.values() if templates is None else templates:
        _, record = starting_model(template, 2, 64, {"pretrained": True})
        if record["source"] != CACHE:
            raise SystemExit(f"{template.id}: weights not usable from the cache: {record.get('reason')}")
        log.info("%s: starts from %s", template.id, record["uri"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sightline_training.weights",
        description="Download every training template's published weights into $TORCH_HOME/hub/checkpoints "
                    "(the training image runs this at docker build), then check that each template loads them.")
    parser.add_argument("--no-check", action="store_true", help="download only; skip building each template")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(message)s")
    files = fetch_all()
    log.info("%d weight files in %s (%.0f MB)", len(files), cache_dir(), sum(f.stat().st_size for f in files) / 1e6)
    if not args.no_check:
        check_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
