"""The parse of one uploaded object: which valid images and annotation files it contributes, and its issues.

Pure of AWS except through the ``ImageSink`` that stores each valid image, so the rules are testable alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from sightline.datasets import archive as zips
from sightline.datasets.coco import CocoDocument, looks_like_coco, parse_coco
from sightline.datasets.images import ImageInfo, InvalidImage, inspect_image
from sightline.datasets.issues import IssueLog
from sightline.datasets.paths import FileKind, classify_file, unsupported_reason

RESULT_FORMAT = "sightline.source/v1"
# Dataset photos are bigger than prediction requests (MAX_IMAGE_BYTES is sized for API Gateway), so they get
# their own cap; MAX_IMAGE_PIXELS still bounds what a decoder allocates.
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024
# A parsed JSON document takes ~10x its size in memory (the function has 2 GB).
MAX_ANNOTATION_FILE_BYTES = 64 * 1024 * 1024
# Issues kept in a source's result document (all are counted).
MAX_RESULT_ISSUES = 10_000

KIND_IMAGE = "image"
KIND_ARCHIVE = "archive"
KIND_COCO = "coco"
KIND_IGNORED = "ignored"
STATUS_REGISTERED = "registered"
STATUS_INVALID = "invalid"


class ImageSink(Protocol):
    def store(self, data: bytes, info: ImageInfo) -> str:
        """Keep a valid image; returns its content-addressed key in the artifact bucket."""


@dataclass(frozen=True)
class SourceImage:
    sha256: str
    key: str  # in the artifact bucket
    width: int
    height: int
    member: str | None = None  # path inside the archive, None for a loose image

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sha256": self.sha256, "key": self.key, "width": self.width, "height": self.height}
        if self.member is not None:
            data["member"] = self.member
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceImage:
        return cls(data["sha256"], data["key"], int(data["width"]), int(data["height"]), data.get("member"))


@dataclass
class SourceAnnotationFile:
    member: str | None  # path inside the archive, None for a loose annotation file
    document: CocoDocument

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, **self.document.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceAnnotationFile:
        return cls(member=data.get("member"), document=CocoDocument.from_dict(data))


@dataclass
class SourceParse:
    kind: str
    issues: IssueLog = field(default_factory=lambda: IssueLog(MAX_RESULT_ISSUES))
    images: list[SourceImage] = field(default_factory=list)
    annotation_files: list[SourceAnnotationFile] = field(default_factory=list)

    @property
    def status(self) -> str:
        return STATUS_REGISTERED if self.images or self.annotation_files else STATUS_INVALID

    def result_document(self, source_key: str, etag: str) -> dict[str, Any]:
        """What the artifact bucket keeps for archives and annotation files (too big for a table item)."""
        return {
            "format": RESULT_FORMAT,
            "source_key": source_key,
            "etag": etag,
            "kind": self.kind,
            "images": [image.to_dict() for image in self.images],
            "annotation_files": [annotation_file.to_dict() for annotation_file in self.annotation_files],
            "issues": self.issues.items,
            "issue_count": self.issues.count,
        }


def member_issue_key(archive_key: str, member: str) -> str:
    return f"{archive_key}!{member}"


def rejected_file(kind: str, key: str, reason: str) -> SourceParse:
    parse = SourceParse(kind=kind)
    parse.issues.add(key, reason)
    return parse


def _image(data: bytes, issue_key: str, member: str | None, parse: SourceParse, sink: ImageSink, max_pixels: int) -> None:
    try:
        info = inspect_image(data, max_pixels=max_pixels)
    except InvalidImage as error:
        parse.issues.add(issue_key, str(error))
        return
    stored_key = sink.store(data, info)
    parse.images.append(SourceImage(info.sha256, stored_key, info.width, info.height, member))


def _annotation(data: bytes, issue_key: str, member: str | None, parse: SourceParse) -> None:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        parse.issues.add(issue_key, f"not valid JSON: {error}")
        return
    if not looks_like_coco(document):
        parse.issues.add(
            issue_key, "not a COCO annotation file: expected a JSON object with 'images', 'annotations', 'categories'"
        )
        return
    coco = parse_coco(document, key=issue_key, issues=parse.issues)
    if coco is not None:
        parse.annotation_files.append(SourceAnnotationFile(member=member, document=coco))


def parse_loose_image(data: bytes, key: str, *, sink: ImageSink, max_pixels: int) -> SourceParse:
    parse = SourceParse(kind=KIND_IMAGE)
    _image(data, key, None, parse, sink, max_pixels)
    return parse


def parse_loose_annotation(data: bytes, key: str) -> SourceParse:
    parse = SourceParse(kind=KIND_COCO)
    _annotation(data, key, None, parse)
    return parse


def parse_archive(
    fileobj: IO[bytes], key: str, *, sink: ImageSink, max_pixels: int, max_members: int, max_total_bytes: int
) -> SourceParse:
    """Every member of a zip: class-folder images and COCO files; unsafe or broken members become issues."""
    parse = SourceParse(kind=KIND_ARCHIVE)
    try:
        archive = zips.open_zip(fileobj)
    except zips.ArchiveRejected as rejection:
        parse.issues.add(key, str(rejection))
        return parse
    with archive:
        try:
            listing = zips.list_members(archive, max_members=max_members, max_total_bytes=max_total_bytes)
        except zips.ArchiveRejected as rejection:
            parse.issues.add(key, str(rejection))
            return parse
        for name, reason in listing.rejected:
            parse.issues.add(member_issue_key(key, name), reason)
        for member in listing.members:
            issue_key = member_issue_key(key, member.path)
            kind = classify_file(member.path)
            if kind is FileKind.SKIP:
                continue
            if kind is FileKind.ARCHIVE:
                parse.issues.add(issue_key, "archives inside archives are not supported")
                continue
            if kind is FileKind.UNSUPPORTED:
                parse.issues.add(issue_key, unsupported_reason(member.path))
                continue
            limit = MAX_IMAGE_FILE_BYTES if kind is FileKind.IMAGE else MAX_ANNOTATION_FILE_BYTES
            try:
                data = zips.read_member(archive, member, max_bytes=limit)
            except zips.MemberRejected as rejection:
                parse.issues.add(issue_key, str(rejection))
                continue
            if kind is FileKind.IMAGE:
                _image(data, issue_key, member.path, parse, sink, max_pixels)
            else:
                _annotation(data, issue_key, member.path, parse)
    if not parse.images and not parse.annotation_files and not parse.issues.count:
        parse.issues.add(key, "archive holds no images or annotation files")
    return parse
