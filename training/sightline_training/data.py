"""Datasets over the manifest's items: images fetched once into a local cache, augmented with transforms v2.

Validation images are only resized (stretched to image_size x image_size, as the predict function does),
so evaluation sees what serving sees. Training images are augmented as :class:`Augmentation` says (the
``augment`` and ``any_orientation`` params); a detector's boxes are ``tv_tensors.BoundingBoxes``, so every
geometric step moves them with the pixels.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from sightline.imaging import to_rgb, upright

from sightline_training import storage
from sightline_training.errors import InvalidInput
from sightline_training.manifest import ManifestItem
from sightline_training.models import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)


FETCH_THREADS = 16  # S3 GETs in flight at once: small objects are latency-bound, so parallel copies add up


def fetch_images(items: Sequence[ManifestItem], cache_dir: Path, threads: int = FETCH_THREADS) -> dict[str, Path]:
    """Local paths of the items' images, copied from S3 to local disk before the first epoch, ``threads`` at a
    time (a bounded pool: one boto3 client, thread-safe, shares its connection pool), each image once (a
    retried job, or another rank, finds them cached). Data loader workers then read local files only."""
    downloaded: list[str] = []

    def fetch(item: ManifestItem) -> tuple[str, Path]:
        if not storage.is_s3(item.image_uri):
            path = storage.local_path(item.image_uri)
        else:
            suffix = PurePosixPath(item.image_uri).suffix.lower()[:8]
            path = cache_dir / (hashlib.sha256(item.image_uri.encode()).hexdigest() + suffix)
            if not path.is_file():
                try:
                    storage.download_file(item.image_uri, path)
                except storage.ObjectNotFound:
                    raise InvalidInput(f"manifest item {item.id}: image not found: {item.image_uri}") from None
                downloaded.append(item.id)  # list.append is atomic under the GIL
        _check_image(path, item)
        return item.id, path

    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        paths = dict(pool.map(fetch, items))
    log.info("%d images ready in %s: %d copied from S3 in %.1f s, %d at a time", len(paths), cache_dir,
             len(downloaded), time.monotonic() - started, max(1, threads))
    return paths


def _check_image(path: Path, item: ManifestItem) -> None:
    # Reads only the header: a bad file fails the job here, not in a data loader worker mid-epoch.
    try:
        with Image.open(path):  # opening reads and checks the header
            pass
    except FileNotFoundError:
        raise InvalidInput(f"manifest item {item.id}: image not found: {item.image_uri}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInput(f"manifest item {item.id}: image unreadable: {item.image_uri}: {error}") from None


# EXIF orientations that turn the stored image by 90 degrees (width and height swap once upright).
_TURNED = (5, 6, 7, 8)


def image_sizes(items: Sequence[ManifestItem], paths: Mapping[str, Path]) -> dict[str, tuple[int, int]]:
    """Each item's image (width, height) as :func:`load_rgb` gives it, read from the file's header only."""

    def size(item: ManifestItem) -> tuple[str, tuple[int, int]]:
        with Image.open(paths[item.id]) as image:
            width, height = image.size
            try:
                turned = image.getexif().get(0x0112) in _TURNED
            except Exception:  # noqa: BLE001 - a malformed EXIF block: upright() keeps the pixels as stored too
                turned = False
        return item.id, ((height, width) if turned else (width, height))

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(size, items))


def load_as_predict_does(path: Path, spec: Any) -> Image.Image:
    """The image as the predict function decodes it for a model of input ``spec`` (``sightline.imaging``): a
    JPEG much bigger than the input is decoded at a reduced scale, so evaluation measures what predict serves.
    Sizes stay the file's (``imaging.source_size``); registration already checked the image, so no size limits."""
    from sightline import imaging

    data = path.read_bytes()
    return imaging.decode_image(data, max_bytes=len(data), max_pixels=2**62, fit=(spec.width, spec.height))


def load_rgb(path: Path) -> Image.Image:
    """The image as the predict function sees it: EXIF orientation applied, 8-bit RGB."""
    image = Image.open(path)
    image.load()  # decodes, and closes the file Pillow opened
    return to_rgb(upright(image))


@dataclass(frozen=True)
class Augmentation:
    """How training images are varied. ``strength`` (the ``augment`` param, 0..1): 0 only resizes; above 0,
    horizontal flips, a zoom of the whole image by a log-uniform factor between ``1 / (1 + strength / 2)``
    (out: the image shrinks on a grey canvas) and ``1 + strength`` (in: a crop of the image's own shape),
    and colour jitter of brightness, contrast and saturation by up to ``0.4 x strength`` and hue by up to
    ``0.05 x strength`` (hue little: colour can be what tells classes apart). ``any_orientation``: also
    vertical flips and turns by 90 degrees, for images with no up (aerial, microscope, top-down)."""

    strength: float = 0.0
    any_orientation: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Augmentation:
        return cls(float(params.get("augment", 0.0)), bool(params.get("any_orientation", False)))

    def zoom(self) -> list[v2.Transform]:
        if self.strength <= 0:
            return []
        return [RandomZoom(1.0 / (1.0 + self.strength / 2.0), 1.0 + self.strength, fill=_GREY)]

    def flips(self) -> list[v2.Transform]:
        if self.strength <= 0 and not self.any_orientation:
            return []
        steps: list[v2.Transform] = [v2.RandomHorizontalFlip()]
        if self.any_orientation:
            # With both flips, a 90 degree turn half the time reaches all 8 right-angle orientations.
            steps += [v2.RandomVerticalFlip(),
                      v2.RandomApply([v2.RandomRotation((90.0, 90.0), expand=True)], p=0.5)]
        return steps

    def colours(self) -> list[v2.Transform]:
        if self.strength <= 0:
            return []
        jitter = 0.4 * self.strength
        return [v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.05 * self.strength)]


NO_AUGMENTATION = Augmentation()
# ImageNet's mean colour: the canvas a zoomed-out image sits on (masks and the rest get 0).
_GREY = {tv_tensors.Image: (124, 116, 104), "others": 0}


class RandomZoom(v2.Transform):
    """Zoom the whole image (and its boxes) by a factor drawn log-uniformly from ``[low, high]``: above 1 a
    random crop of the image's own aspect ratio, ``1 / factor`` of each side; below 1 the image placed at a
    random spot of a canvas ``1 / factor`` times its size. The caller resizes afterwards, so a crop is taken at
    the image's full resolution and, stretched to the square input, keeps the shapes the model sees at serving."""

    def __init__(self, low: float, high: float, fill: Any = 0) -> None:
        super().__init__()
        if not 0 < low <= 1 <= high:
            raise ValueError(f"zoom range must include 1, got [{low}, {high}]")
        self.low, self.high = low, high
        self._fill = v2._utils._setup_fill_arg(fill)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        draws = torch.rand(3)
        factor = math.exp(math.log(self.low) + float(draws[0]) * (math.log(self.high) - math.log(self.low)))
        if factor >= 1.0:
            crop_height, crop_width = max(1, round(height / factor)), max(1, round(width / factor))
            top = int(float(draws[1]) * (height - crop_height + 1))
            left = int(float(draws[2]) * (width - crop_width + 1))
            return {"crop": (top, left, crop_height, crop_width)}
        canvas_height, canvas_width = round(height / factor), round(width / factor)
        top = int(float(draws[1]) * (canvas_height - height + 1))
        left = int(float(draws[2]) * (canvas_width - width + 1))
        return {"pad": [left, top, canvas_width - width - left, canvas_height - height - top]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if "crop" in params:
            top, left, height, width = params["crop"]
            return self._call_kernel(F.crop, inpt, top=top, left=left, height=height, width=width)
        fill = v2._utils._get_fill(self._fill, type(inpt))
        return self._call_kernel(F.pad, inpt, padding=params["pad"], fill=fill)


def classification_transforms(image_size: int, train: bool,
                              augmentation: Augmentation = NO_AUGMENTATION) -> v2.Compose:
    if train:
        # A classifier's object may be anywhere: crops of any part down to 1 - 0.8 x strength of the area.
        crop = ([v2.RandomResizedCrop(image_size, scale=(1.0 - 0.8 * augmentation.strength, 1.0), antialias=True)]
                if augmentation.strength > 0 else [v2.Resize((image_size, image_size), antialias=True)])
        # Colours first, on the PIL image: Pillow's kernels are many times faster than the tensor ones (hue).
        steps = [*augmentation.colours(), v2.ToImage(), *crop, *augmentation.flips()]
    else:
        # Resize the PIL image (Pillow bilinear), as a Pillow-only predict function would.
        steps = [v2.Resize((image_size, image_size), antialias=True), v2.ToImage()]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def detection_transforms(image_size: int, train: bool, augmentation: Augmentation = NO_AUGMENTATION) -> v2.Compose:
    if train:
        steps = [
            *augmentation.colours(),  # on the PIL image, as for classifiers
            v2.ToImage(),
            *augmentation.zoom(),
            v2.Resize((image_size, image_size), antialias=True),
            *augmentation.flips(),
            v2.ClampBoundingBoxes(),
            # Boxes cropped to (almost) nothing go, with their labels.
            v2.SanitizeBoundingBoxes(min_size=1.0),
        ]
    else:
        steps = [v2.Resize((image_size, image_size), antialias=True), v2.ToImage(), v2.ClampBoundingBoxes()]
    # Images stay in [0, 1]: the detectors normalise inside the model.
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


class _ManifestDataset(Dataset):
    """Manifest items whose images were fetched to ``paths`` (by item id), read through ``transform``."""

    def __init__(self, items: Sequence[ManifestItem], paths: dict[str, Path], transform: Callable) -> None:
        self.items = list(items)
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)


class ClassificationDataset(_ManifestDataset):
    """``(image [3, S, S] normalised, class index)`` per manifest item; a negative's index is ``background``
    (the output after the classes, which only a manifest with negatives has)."""

    def __init__(self, items: Sequence[ManifestItem], paths: dict[str, Path], transform: Callable,
                 background: int | None = None) -> None:
        super().__init__(items, paths, transform)
        if background is None and any(item.class_index is None for item in self.items):
            raise ValueError("negatives need a background output")
        self.background = background

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        target = self.background if item.class_index is None else item.class_index
        return self.transform(load_rgb(self.paths[item.id])), target


class MultiLabelDataset(_ManifestDataset):
    """``(image [3, S, S] normalised, multi-hot float [C])`` per manifest item; a negative's is all zeros."""

    def __init__(self, items: Sequence[ManifestItem], paths: dict[str, Path], transform: Callable,
                 num_classes: int) -> None:
        super().__init__(items, paths, transform)
        self.num_classes = num_classes

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        target[list(item.class_indices)] = 1.0
        return self.transform(load_rgb(self.paths[item.id])), target


class DetectionDataset(_ManifestDataset):
    """``(image [3, S, S] in [0, 1], {"boxes": BoundingBoxes XYXY, "labels": int64})`` per manifest item."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[index]
        image = load_rgb(self.paths[item.id])
        boxes = torch.tensor(
            [[b.x_min, b.y_min, b.x_max, b.y_max] for b in item.boxes], dtype=torch.float32
        ).reshape(-1, 4)
        target = {
            # A tv_tensor, so every geometric transform moves the boxes with the pixels.
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(image.height, image.width)),
            "labels": torch.tensor([b.label_id for b in item.boxes], dtype=torch.int64),
        }
        return self.transform(image, target)


def collate_detection(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


def train_loader(dataset: Dataset, batch_size: int, workers: int, generator: torch.Generator,
                 collate_fn: Callable | None = None, sampler: DistributedSampler | None = None) -> DataLoader:
    """Shuffled batches; with ``sampler`` (several ranks) this rank's share, the same count on every rank."""
    size = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                      drop_last=_drop_last(size, batch_size), num_workers=workers,
                      generator=generator if sampler is None else None, collate_fn=collate_fn,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)


def distributed_sampler(dataset: Dataset, world_size: int, rank: int, seed: int) -> DistributedSampler:
    """Each rank's share of a shuffled epoch (``set_epoch`` before each); shares are padded to one size by
    repeating a few images, so every rank takes the same number of steps."""
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)


def statistics_loader(dataset: Dataset, batch_size: int, workers: int,
                      collate_fn: Callable | None = None) -> DataLoader:
    """Train-mode forward passes in order (``engine.recompute_batch_norm_statistics``)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=_drop_last(len(dataset), batch_size),
                      num_workers=workers, collate_fn=collate_fn, pin_memory=torch.cuda.is_available())


def _drop_last(size: int, batch_size: int) -> bool:
    # BatchNorm cannot train on a batch of one image (1x1 feature maps): drop a last batch of one.
    return size > batch_size and size % batch_size == 1


def eval_loader(dataset: Dataset, batch_size: int, workers: int, collate_fn: Callable | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_fn,
                      pin_memory=torch.cuda.is_available())
