"""Datasets over the manifest's items: images fetched once into a local cache, augmented with transforms v2.

Validation images are only resized (stretched to image_size x image_size, as the predict function does),
so evaluation sees what serving sees.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from sightline.imaging import to_rgb, upright

from sightline_training import storage
from sightline_training.errors import InvalidInput
from sightline_training.manifest import ManifestItem
from sightline_training.models import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)


def fetch_images(items: Sequence[ManifestItem], cache_dir: Path, threads: int = 16) -> dict[str, Path]:
    """Local paths of the items' images, downloading each image once (a retried job finds them cached)."""

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
        _check_image(path, item)
        return item.id, path

    cache_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        paths = dict(pool.map(fetch, items))
    log.info("%d images ready in %s", len(paths), cache_dir)
    return paths


def _check_image(path: Path, item: ManifestItem) -> None:
    # Reads only the header: a bad file fails the job here, not in a data loader worker mid-epoch.
    try:
        with Image.open(path) as image:
            image.size
    except FileNotFoundError:
        raise InvalidInput(f"manifest item {item.id}: image not found: {item.image_uri}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInput(f"manifest item {item.id}: image unreadable: {item.image_uri}: {error}") from None


def load_rgb(path: Path) -> Image.Image:
    """The image as the predict function sees it: EXIF orientation applied, 8-bit RGB."""
    image = Image.open(path)
    image.load()  # decodes, and closes the file Pillow opened
    return to_rgb(upright(image))


def classification_transforms(image_size: int, train: bool) -> v2.Compose:
    if train:
        steps = [
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    else:
        # Resize the PIL image (Pillow bilinear), as a Pillow-only predict function would.
        steps = [v2.Resize((image_size, image_size), antialias=True), v2.ToImage()]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def detection_transforms(image_size: int, train: bool) -> v2.Compose:
    if train:
        steps = [
            v2.ToImage(),
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0}, side_range=(1.0, 2.0), p=0.3),
            v2.RandomHorizontalFlip(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=1.0),
        ]
    else:
        steps = [v2.Resize((image_size, image_size), antialias=True), v2.ToImage(), v2.ClampBoundingBoxes()]
    # Images stay in [0, 1]: SSDlite normalises inside the model.
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
                 collate_fn: Callable | None = None) -> DataLoader:
    # BatchNorm cannot train on a batch of one image (1x1 feature maps): drop a last batch of one.
    drop_last = len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last, num_workers=workers,
                      generator=generator, collate_fn=collate_fn, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


def eval_loader(dataset: Dataset, batch_size: int, workers: int, collate_fn: Callable | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_fn,
                      pin_memory=torch.cuda.is_available())
