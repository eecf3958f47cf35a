"""A dataset's contents, joined from its source records: which images are classification examples (by class
folder, Watson archive or an annotation file's label), which are detection images with boxes (from any
annotation format), which are negatives, and the problems found while joining.

Registration stores each uploaded object on its own; only here do annotation files meet the images they name, so
the result does not depend on the order the objects arrived in.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.contract import CLASSIFICATION, DETECTION, MULTILABEL, DatasetStatus
from sightline.datasets.classfolders import class_label
from sightline.datasets.formats import watson, yolo
from sightline.datasets.formats.base import (
    FRACTIONS,
    AnnotationDocument,
    Box,
    BoxRejected,
    ImageAnnotations,
    fit_box,
)
from sightline.datasets.issues import IssueLog
from sightline.datasets.paths import DATASETS_PREFIX, IMAGE_SUFFIXES, resolve_relative
from sightline.datasets.sources import (
    KIND_ANNOTATION,
    KIND_ARCHIVE,
    KIND_IMAGE,
    LEGACY_KIND_COCO,
    STATUS_REGISTERED,
    SourceAnnotationFile,
    SourceImage,
    member_issue_key,
)

CLASS_FOLDERS = "class-folders"  # the layout's name in a dataset's ``formats``

DATASET_ISSUE_LIMIT = 500


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    key: str  # content-addressed copy in the artifact bucket
    width: int
    height: int


@dataclass(frozen=True)
class FoundImage:
    path: str  # where it was uploaded: the S3 key, or "<zip key>!<member>"
    lookup_path: str  # the S3 key it would have if unzipped beside its archive: what loose annotation files name
    archive: str | None
    member: str | None
    label: str | None  # from the class-folder layout, or the Watson archive it came in
    image: StoredImage
    watson_role: str | None = None  # "positive" or "negative" when it came in a Watson training archive
    uploaded: str = ""  # when its upload was made (ISO 8601): a later upload's labels win

    @property
    def negative(self) -> bool:
        """From a Watson negative_examples archive: an image of no class."""
        return self.watson_role == "negative"

    @property
    def folder(self) -> tuple[str | None, str]:
        return self.archive, posixpath.dirname(self.member if self.member is not None else self.path)


@dataclass(frozen=True)
class FoundAnnotationFile:
    path: str  # the S3 key, or "<zip key>!<member>"
    archive: str | None
    folder: str  # file names in it are relative to this (inside the archive, or an S3 "folder")
    document: AnnotationDocument
    uploaded: str = ""


@dataclass
class DatasetSources:
    images: list[FoundImage] = field(default_factory=list)
    annotation_files: list[FoundAnnotationFile] = field(default_factory=list)
    issues: IssueLog = field(default_factory=lambda: IssueLog(DATASET_ISSUE_LIMIT))


@dataclass(frozen=True)
class LabelledImage:
    image: StoredImage
    labels: tuple[str, ...]  # sorted; empty: an image of none of the classes (a negative)
    path: str  # what gave the labels: the image's own path (class folder), or the annotation file

    @property
    def single_label(self) -> str | None:
        return self.labels[0] if len(self.labels) == 1 else None


@dataclass
class AnnotatedImage:
    image: StoredImage
    boxes: list[Box]
    path: str  # the annotation file the boxes came from
    seen: set[Box] = field(default_factory=set, repr=False, compare=False)

    def add(self, box: Box) -> None:
        """Keep ``box`` unless the image has it already (the same image listed twice in one file counts once)."""
        if box not in self.seen:
            self.seen.add(box)
            self.boxes.append(box)


# Training needs this many examples of every class (images for classification, images with the class's boxes for
# detection) before a version is started: fewer cannot be split into train and validation with any meaning.
MIN_IMAGES_PER_CLASS = 5
MAX_LISTED_DUPLICATES = 20  # groups of same-content images named on the dataset (all are counted)


@dataclass
class DatasetContents:
    labelled: dict[str, LabelledImage]  # by image sha256: class labels (one, several, or none for a negative)
    detection: dict[str, AnnotatedImage]
    copies: dict[str, list[str]]  # sha256 -> every path a valid image with that content was uploaded at
    stored: dict[str, StoredImage]
    issues: IssueLog
    formats: list[str] = field(default_factory=list)  # the layouts and annotation formats it was read from

    @property
    def image_count(self) -> int:
        """Valid images, unique by content."""
        return len(self.stored)

    @property
    def annotation_count(self) -> int:
        return sum(len(entry.boxes) for entry in self.detection.values())

    @property
    def negatives(self) -> dict[str, LabelledImage]:
        return {sha: entry for sha, entry in self.labelled.items() if not entry.labels}

    def class_stats(self) -> dict[str, dict[str, int]]:
        """Per class: the images that show it (by label or by box), its boxes, and its examples (labelled
        images plus boxes: what training sees of it)."""
        examples = self.classes()
        images: Counter[str] = Counter()
        boxes: Counter[str] = Counter(box.label for entry in self.detection.values() for box in entry.boxes)
        for sha in self.stored:
            shown = set(self.labelled[sha].labels) if sha in self.labelled else set()
            if sha in self.detection:
                shown.update(box.label for box in self.detection[sha].boxes)
            images.update(shown)
        return {label: {"images": images[label], "boxes": boxes[label], "examples": examples[label]}
                for label in sorted(images)}

    def classes(self) -> dict[str, int]:
        """Examples per label: labelled images plus detection boxes."""
        counts = Counter(label for entry in self.labelled.values() for label in entry.labels)
        counts.update(box.label for entry in self.detection.values() for box in entry.boxes)
        return dict(sorted(counts.items()))

    def duplicates(self) -> dict[str, Any]:
        """Content uploaded at more than one path: how many extra copies, and the first groups."""
        groups = [(sha, paths) for sha, paths in sorted(self.copies.items()) if len(paths) > 1]
        return {
            "count": sum(len(paths) - 1 for _, paths in groups),
            "groups": [{"sha256": sha, "paths": paths[:5], "copies": len(paths)}
                       for sha, paths in groups[:MAX_LISTED_DUPLICATES]],
        }

    def status(self) -> DatasetStatus:
        """Ready with something to train on; otherwise invalid when issues say why, empty when nothing does."""
        return dataset_status(bool(self.tasks()), self.issues.count)

    def tasks(self) -> list[str]:
        """What a model could train on: single-labelled images make classification data, any labelled image is
        multi-label data (one label is a multi-label answer too), boxes make detection data."""
        present = []
        if any(entry.single_label for entry in self.labelled.values()):
            present.append(CLASSIFICATION)
        if self.annotation_count:
            present.append(DETECTION)
        if any(entry.labels for entry in self.labelled.values()):
            present.append(MULTILABEL)
        return present

    def too_small(self) -> dict[str, list[str]]:
        """Per task present, why it cannot train yet: classes with fewer than ``MIN_IMAGES_PER_CLASS`` examples,
        or fewer than two classes for classification. Checked before any GPU time is spent."""
        problems: dict[str, list[str]] = {}
        for task in self.tasks():
            counts = images_per_class(self.items(task, bucket=""))
            found = [f"class {label!r} has {count} image(s)" for label, count in counts.items()
                     if count < MIN_IMAGES_PER_CLASS]
            if task == CLASSIFICATION and len(counts) < 2:
                found.insert(0, f"classification needs at least 2 classes, found {len(counts)}")
            if found:
                problems[task] = found
        return problems

    def training_digests(self) -> dict[str, str]:
        """Per task present: a SHA-256 of what a manifest for that task holds (image contents, labels or boxes),
        so it changes when, and only when, a model of that task would train on different data."""
        return {
            task: hashlib.sha256(
                json.dumps(self.items(task, bucket=""), sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            for task in self.tasks()
        }

    def items(self, task: str, bucket: str) -> list[dict[str, Any]]:
        """Manifest items (without ``split``) for ``task``, ordered by id. Classification takes the
        single-labelled images and the negatives (``label: null``); multi-label takes every labelled image."""
        items: list[dict[str, Any]] = []
        if task == CLASSIFICATION:
            for _, entry in sorted(self.labelled.items()):
                if entry.single_label or not entry.labels:
                    items.append({**_item_base(entry.image, bucket), "label": entry.single_label})
        elif task == MULTILABEL:
            for _, entry in sorted(self.labelled.items()):
                items.append({**_item_base(entry.image, bucket), "labels": list(entry.labels)})
        elif task == DETECTION:
            for _, entry in sorted(self.detection.items()):
                items.append({**_item_base(entry.image, bucket), "boxes": [box.to_dict() for box in entry.boxes]})
        return items

    def entries(self) -> dict[str, dict[str, Any]]:
        """One entry per image (by content): where it was uploaded, its labels and/or boxes, and its classes;
        what ``GET /v1/datasets/{name}/images`` lists."""
        entries: dict[str, dict[str, Any]] = {}
        for sha, image in sorted(self.stored.items()):
            paths = self.copies.get(sha, [])
            entry: dict[str, Any] = {"sha256": sha, "key": image.key, "width": image.width, "height": image.height,
                                     "path": paths[0] if paths else "", "copies": len(paths)}
            classes: set[str] = set()
            if sha in self.labelled:
                entry["labels"] = list(self.labelled[sha].labels)
                classes.update(self.labelled[sha].labels)
            if sha in self.detection:
                boxes = self.detection[sha].boxes
                entry["box_count"] = len(boxes)
                entry["boxes"] = [box.to_dict() for box in boxes[:MAX_ENTRY_BOXES]]
                classes.update(box.label for box in boxes)
            entry["classes"] = sorted(classes)
            entries[sha] = entry
        return entries


# Boxes an image's entry shows (an image of thousands of small objects stays inside a table item; the manifest
# always has all of them).
MAX_ENTRY_BOXES = 1000


def images_per_class(items: list[dict[str, Any]]) -> dict[str, int]:
    """Manifest items per class they show, by class name."""
    counts = Counter(label for item in items for label in item_labels(item))
    return dict(sorted(counts.items()))


def item_labels(item: dict[str, Any]) -> set[str]:
    """The classes a manifest item shows: its boxes' labels, its labels, or its label (none for a negative)."""
    if "boxes" in item:
        return {box["label"] for box in item["boxes"]}
    if "labels" in item:
        return set(item["labels"])
    return {item["label"]} if item.get("label") else set()


def _item_base(image: StoredImage, bucket: str) -> dict[str, Any]:
    return {
        "id": image.sha256,
        "image": {"bucket": bucket, "key": image.key},
        "width": image.width,
        "height": image.height,
    }


# --- reading the source records -------------------------------------------------------------------------------


def source_items(name: str) -> Iterator[dict[str, Any]]:
    """Every SOURCE item of a dataset, strongly consistent (the caller has usually just written one)."""
    yield from aws.query_items(
        aws.table(get_settings().table_name),
        KeyConditionExpression=Key("pk").eq(keys.dataset_pk(name)) & Key("sk").begins_with(keys.source_sk("")),
        ConsistentRead=True,
    )


def _read_result(result_key: str) -> dict[str, Any] | None:
    try:
        response = aws.client("s3").get_object(Bucket=get_settings().artifact_bucket, Key=result_key)
    except ClientError as error:
        if aws.is_not_found(error):
            return None
        raise
    return json.loads(response["Body"].read())


def _relative_to_dataset(key: str) -> str:
    # "datasets/<name>/<rest>" -> "<rest>"
    return key[len(DATASETS_PREFIX):].partition("/")[2]


def load_dataset_sources(name: str) -> DatasetSources:
    sources = DatasetSources()
    for item in sorted(source_items(name), key=lambda source: source["key"]):
        key: str = item["key"]
        # Upload time (S3 keeps seconds), then registration time: what orders two uploads about one image.
        uploaded = f"{item.get('uploaded_at') or item.get('registered_at') or ''} {item.get('registered_at') or ''}"
        sources.issues.extend(list(item.get("issues", [])), int(item.get("issue_count", 0)))
        if item.get("status") != STATUS_REGISTERED:
            continue
        kind = item.get("kind")
        if kind == KIND_IMAGE and "image" in item:
            image = item["image"]
            stored = StoredImage(image["sha256"], image["key"], int(image["width"]), int(image["height"]))
            sources.images.append(FoundImage(key, key, None, None, class_label(_relative_to_dataset(key)), stored,
                                             uploaded=uploaded))
        elif kind in (KIND_ARCHIVE, KIND_ANNOTATION, LEGACY_KIND_COCO) and ("result_key" in item or "result_keys" in item):
            # One result document, or one per chunk of a big zip (``fanout``): all of them, or none.
            results = [_read_result(result_key) for result_key in item.get("result_keys") or [item["result_key"]]]
            if any(result is None or result.get("etag") != item.get("etag") for result in results):
                # Lost to a concurrent upload of the same key (see registration): never mix two uploads' contents.
                sources.issues.add(key, "registration result is missing or out of date; upload the file again")
                continue
            for result in results:
                _add_result(sources, key, kind, result, uploaded)
    return sources


def _add_result(sources: DatasetSources, key: str, kind: str, result: dict[str, Any], uploaded: str) -> None:
    archive = key if kind == KIND_ARCHIVE else None
    beside = posixpath.dirname(key)
    role = watson.archive_role(key) if archive else None
    for data in result.get("images", []):
        image = SourceImage.from_dict(data)
        member = image.member or ""
        stored = StoredImage(image.sha256, image.key, image.width, image.height)
        sources.images.append(
            FoundImage(
                path=member_issue_key(key, member),
                lookup_path=posixpath.join(beside, member),
                archive=archive,
                member=member,
                label=role[1] if role else class_label(member),
                image=stored,
                watson_role=role[0] if role else None,
                uploaded=uploaded,
            )
        )
    for data in result.get("annotation_files", []):
        annotation_file = SourceAnnotationFile.from_dict(data)
        if annotation_file.member is None:
            path, folder = key, beside
        else:
            path, folder = member_issue_key(key, annotation_file.member), posixpath.dirname(annotation_file.member)
        sources.annotation_files.append(FoundAnnotationFile(path, archive, folder, annotation_file.document, uploaded))


# --- the join --------------------------------------------------------------------------------------------------


class _ImageIndex:
    """Finds the image an annotation file names: by exact relative path, else by a file name that is unique.
    A name ending in ``.*`` (YOLO's label files, VOC files without <filename>) stands for any image extension."""

    def __init__(self, images: list[FoundImage]) -> None:
        self.by_lookup_path: dict[str, FoundImage] = {}
        self.by_member: dict[tuple[str, str], FoundImage] = {}
        self.by_basename: dict[str, list[FoundImage]] = defaultdict(list)
        self.by_archive_basename: dict[tuple[str, str], list[FoundImage]] = defaultdict(list)
        # Loose images first: where a loose key and an unzipped path coincide, the loose file wins.
        for image in sorted(images, key=lambda found: (found.archive is not None, found.path)):
            self.by_lookup_path.setdefault(image.lookup_path, image)
            self.by_basename[posixpath.basename(image.lookup_path)].append(image)
            if image.archive is not None and image.member is not None:
                self.by_member.setdefault((image.archive, image.member), image)
                self.by_archive_basename[(image.archive, posixpath.basename(image.member))].append(image)

    def find(self, annotation_file: FoundAnnotationFile, names: list[str]) -> tuple[FoundImage | None, str]:
        """The image the first of ``names`` that matches means and, when none does, why."""
        why = ""
        for name in names:
            for candidate in _expand(name):
                found, reason = self._find_one(annotation_file, candidate)
                if found is not None:
                    return found, ""
                why = why or reason
        return None, why

    def _find_one(self, annotation_file: FoundAnnotationFile, file_name: str) -> tuple[FoundImage | None, str]:
        target = resolve_relative(annotation_file.folder, file_name)
        basename = posixpath.basename(file_name.replace("\\", "/"))
        if annotation_file.archive is not None:
            found = self.by_member.get((annotation_file.archive, target))
            candidates = self.by_archive_basename.get((annotation_file.archive, basename), [])
            where = "in the archive"
        else:
            found = self.by_lookup_path.get(target)
            candidates = self.by_basename.get(basename, [])
            where = f"at {target}"
        if found is not None:
            return found, ""
        if len(candidates) == 1:
            return candidates[0], ""
        if len(candidates) > 1:
            return None, f"not found {where}, and {len(candidates)} images share its file name"
        return None, f"not found {where}"


def _expand(name: str) -> list[str]:
    if not name.endswith(".*"):
        return [name]
    stem = name[:-2]
    return [stem + extension for extension in sorted(IMAGE_SUFFIXES)] + [
        stem + extension.upper() for extension in sorted(IMAGE_SUFFIXES)]


class _ClassNames:
    """YOLO label files name classes by index: the names come from the names files (data.yaml, classes.txt) of
    the same archive, or, for loose files, from the dataset's loose names file."""

    def __init__(self, annotation_files: list[FoundAnnotationFile], issues: IssueLog) -> None:
        self.by_archive: dict[str | None, tuple[str, list[str]]] = {}
        for found in sorted(annotation_files, key=lambda each: each.path):
            if found.document.format != yolo.NAMES:
                continue
            kept = self.by_archive.get(found.archive)
            if kept is None:
                self.by_archive[found.archive] = (found.path, found.document.categories)
            elif kept[1] != found.document.categories:
                issues.add(found.path, f"class names differ from those in {kept[0]}, which are used")
        self.reported: set[str] = set()

    def name(self, annotation_file: FoundAnnotationFile, index: str, issues: IssueLog) -> str | None:
        names = self.by_archive.get(annotation_file.archive)
        if names is None:
            if annotation_file.path not in self.reported:
                self.reported.add(annotation_file.path)
                issues.add(annotation_file.path, "no data.yaml or classes.txt names the classes of this YOLO label "
                                                 "file; its classes are named by their index")
            return index
        position = int(index)
        if position >= len(names[1]) or not names[1][position]:
            issues.add(annotation_file.path, f"class index {index} has no usable name in {names[0]}; box skipped")
            return None
        return names[1][position]


def _annotated_boxes(
    entry: ImageAnnotations, found: FoundImage, annotation_file: FoundAnnotationFile, names: _ClassNames,
    issues: IssueLog,
) -> list[Box] | None:
    """The image's boxes fitted to the real image, or None when the annotation cannot be trusted."""
    width, height = found.image.width, found.image.height
    document = annotation_file.document
    if entry.width is not None and (entry.width, entry.height) != (width, height):
        hint = ("; it is the file's size before its EXIF rotation: annotate the upright image"
                if (entry.width, entry.height) == (height, width) else "")
        issues.add(
            annotation_file.path,
            f"{entry.describe} is declared {entry.width}x{entry.height} but the file is {width}x{height}{hint}; "
            "its annotations are skipped",
        )
        return None
    boxes: list[Box] = []
    for box in entry.boxes:
        label: str | None = box.label
        if document.class_indices:
            label = names.name(annotation_file, box.label, issues)
            if label is None:
                continue
        box = box.scaled(width, height, label) if document.box_units == FRACTIONS else Box(
            label, box.x_min, box.y_min, box.x_max, box.y_max)
        try:
            boxes.append(fit_box(box, width, height))
        except BoxRejected as rejection:
            issues.add(annotation_file.path, f"{entry.describe}: {rejection}")
    return boxes


def dataset_status(trainable: bool, issue_count: int) -> DatasetStatus:
    """The one rule for a dataset's status (docs/architecture.md, "States"): every file has been processed
    when a status is computed, so each state is terminal until the dataset changes again."""
    if trainable:
        return DatasetStatus.READY
    return DatasetStatus.INVALID if issue_count else DatasetStatus.EMPTY


def _upload_order(found: FoundImage | FoundAnnotationFile) -> tuple[str, str]:
    return found.uploaded, found.path


class _Join:
    """Labels and boxes per image (by content). Sources are read oldest upload first, so when two uploads say
    different things about the same image the later one wins, and the dataset says so in an issue."""

    def __init__(self, issues: IssueLog) -> None:
        self.issues = issues
        self.labelled: dict[str, LabelledImage] = {}
        self.detection: dict[str, AnnotatedImage] = {}

    def label(self, found: FoundImage, labels: list[str], path: str) -> None:
        sha = found.image.sha256
        entry = LabelledImage(found.image, tuple(sorted(set(labels))), path)
        earlier = self.labelled.get(sha)
        if earlier is not None and earlier.labels != entry.labels:
            self.issues.add(path, f"{found.path} was labelled {_shown(earlier.labels)} by {earlier.path}; "
                                  f"this later upload's {_shown(entry.labels)} replaces it")
        self.labelled[sha] = entry

    def boxes(self, found: FoundImage, boxes: list[Box], path: str) -> None:
        sha = found.image.sha256
        earlier = self.detection.get(sha)
        if earlier is None or earlier.path != path:
            if earlier is not None and earlier.boxes != boxes:
                self.issues.add(path, f"{found.path} had {len(earlier.boxes)} box(es) from {earlier.path}; this "
                                      f"later upload's {len(boxes)} replace them")
            self.detection[sha] = AnnotatedImage(found.image, [], path)
        for box in boxes:
            self.detection[sha].add(box)


def _shown(labels: tuple[str, ...]) -> str:
    return "as none of the classes" if not labels else repr(", ".join(labels))


def join(sources: DatasetSources) -> DatasetContents:
    issues = sources.issues
    index = _ImageIndex(sources.images)
    names = _ClassNames(sources.annotation_files, issues)
    result = _Join(issues)
    claimed: set[str] = set()
    detection_folders: set[tuple[str | None, str]] = set()
    annotated_archives: set[str] = set()
    formats: set[str] = set()

    for annotation_file in sorted(sources.annotation_files, key=_upload_order):
        document = annotation_file.document
        formats.add(yolo.NAME if document.format == yolo.NAMES else document.format)
        if annotation_file.archive is not None:
            annotated_archives.add(annotation_file.archive)
        for entry in document.images:
            found, why = index.find(annotation_file, [entry.file_name, *entry.alternatives])
            if found is None:
                issues.add(annotation_file.path, f"{entry.describe} {why}")
                continue
            labels = entry.class_labels
            if labels is not None:
                result.label(found, labels, annotation_file.path)
                claimed.add(found.path)
                continue
            boxes = _annotated_boxes(entry, found, annotation_file, names, issues)
            if boxes is None:
                continue
            claimed.add(found.path)
            detection_folders.add(found.folder)
            result.boxes(found, boxes, annotation_file.path)

    labelled_by_file = set(result.labelled)
    for found in sorted(sources.images, key=_upload_order):
        if found.path in claimed:
            continue
        if found.archive in annotated_archives or found.folder in detection_folders:
            # Beside annotated images it is a detection image nobody annotated, not an example of a class
            # named after its folder ("images").
            issues.add(found.path, "no annotation file lists this image, which sits with annotated images; skipped")
            continue
        if not found.negative and found.label is None:
            issues.add(found.path, "image is not in a class folder and no annotation file lists it")
            continue
        formats.add(watson.NAME if found.watson_role else CLASS_FOLDERS)
        if found.image.sha256 in labelled_by_file:
            continue  # an annotation file's labels beat the folder's
        earlier = result.labelled.get(found.image.sha256)
        if found.negative and earlier is not None and earlier.labels:
            issues.add(found.path, f"same image as {earlier.path} (labelled {_shown(earlier.labels)}); "
                                   "not used as a negative")
            continue
        if not found.negative and earlier is not None and not earlier.labels:
            issues.add(earlier.path, f"same image as {found.path} (labelled {found.label!r}); not used as a negative")
        result.label(found, [] if found.negative else [found.label or ""], found.path)

    copies: dict[str, list[str]] = defaultdict(list)
    stored: dict[str, StoredImage] = {}
    for found in sorted(sources.images, key=lambda image: image.path):
        copies[found.image.sha256].append(found.path)
        stored.setdefault(found.image.sha256, found.image)
    return DatasetContents(
        labelled=result.labelled,
        detection=result.detection,
        copies=dict(copies),
        stored=stored,
        issues=issues,
        formats=sorted(formats),
    )


def dataset_contents(name: str) -> DatasetContents:
    return join(load_dataset_sources(name))
