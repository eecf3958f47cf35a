"""The parse of one uploaded object: which valid images and annotation files it contributes, and its issues.

Receive, identify, parse: a loose image, a loose annotation file (its format identified by
``sightline.datasets.formats``), or an archive (zip, tar, tar.gz) of both. Pure of AWS except through the
``ImageSink`` that stores each valid image, so the rules are testable alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from sightline.datasets import archive as archives
from sightline.datasets.formats import parse_annotation_file
from sightline.datasets.formats.base import AnnotationDocument
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
KIND_ANNOTATION = "annotation"
# What source items of annotation files said before other formats than COCO existed (read as KIND_ANNOTATION).
LEGACY_KIND_COCO = "coco"
KIND_IGNORED = "ignored"
STATUS_REGISTERED = "registered"
STATUS_INVALID = "invalid"
EMPTY_ARCHIVE = "archive holds no images or annotation files"


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
    document: AnnotationDocument

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, **self.document.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceAnnotationFile:
        return cls(member=data.get("member"), document=AnnotationDocument.from_dict(data))


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


def _annotation(data: bytes, path: str, issue_key: str, member: str | None, parse: SourceParse) -> None:
    document = parse_annotation_file(data, path=path, issue_key=issue_key, issues=parse.issues)
    if document is not None:
        parse.annotation_files.append(SourceAnnotationFile(member=member, document=document))


def parse_loose_image(data: bytes, key: str, *, sink: ImageSink, max_pixels: int) -> SourceParse:
    parse = SourceParse(kind=KIND_IMAGE)
    _image(data, key, None, parse, sink, max_pixels)
    return parse


def parse_loose_annotation(data: bytes, key: str) -> SourceParse:
    parse = SourceParse(kind=KIND_ANNOTATION)
    _annotation(data, key, key, None, parse)
    return parse


def parse_archive(
    fileobj: IO[bytes], key: str, *, sink: ImageSink, max_pixels: int, max_members: int, max_total_bytes: int,
    member_range: tuple[int, int] | None = None,
) -> SourceParse:
    """Every member of a zip or tar (or, with ``member_range``, one chunk of a zip's members): images and
    annotation files; unsafe or broken members become issues, and an archive refused as a whole keeps what was
    read before the refusal (a tar is read as a stream)."""
    parse = SourceParse(kind=KIND_ARCHIVE)
    members = archives.entries(fileobj, key, max_members=max_members, max_total_bytes=max_total_bytes,
                               max_member_bytes=max(MAX_IMAGE_FILE_BYTES, MAX_ANNOTATION_FILE_BYTES),
                               member_range=member_range)
    try:
        for member in members:
            if isinstance(member, archives.RefusedMember):
                parse.issues.add(member_issue_key(key, member.name), member.reason)
                continue
            _member(member, key, parse, sink, max_pixels)
    except archives.ArchiveRejected as rejection:
        parse.issues.add(key, str(rejection))
    if member_range is None and not parse.images and not parse.annotation_files and not parse.issues.count:
        parse.issues.add(key, EMPTY_ARCHIVE)
    return parse


def _member(member: archives.Entry, key: str, parse: SourceParse, sink: ImageSink, max_pixels: int) -> None:
    issue_key = member_issue_key(key, member.path)
    kind = classify_file(member.path)
    if kind is FileKind.SKIP:
        return
    if kind is FileKind.ARCHIVE:
        parse.issues.add(issue_key, "archives inside archives are not supported")
        return
    if kind is FileKind.UNSUPPORTED:
        parse.issues.add(issue_key, unsupported_reason(member.path))
        return
    limit = MAX_IMAGE_FILE_BYTES if kind is FileKind.IMAGE else MAX_ANNOTATION_FILE_BYTES
    try:
        data = member.read(limit)
    except archives.MemberRejected as rejection:
        parse.issues.add(issue_key, str(rejection))
        return
    if kind is FileKind.IMAGE:
        _image(data, issue_key, member.path, parse, sink, max_pixels)
    else:
        _annotation(data, member.path, issue_key, member.path, parse)
