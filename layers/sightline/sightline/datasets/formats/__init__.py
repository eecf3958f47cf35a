"""Annotation formats: one module per format, each behind the small ``Format`` interface of ``base``.

``identify`` picks the format of a file from its name and first bytes; the format parses it into the common
``AnnotationDocument``. Images, archives and the class-folder and Watson layouts are not annotation files:
``sightline.datasets.sources`` reads those.
"""
from __future__ import annotations

from sightline.datasets.formats.base import HEAD_BYTES, AnnotationDocument, Format, suffix
from sightline.datasets.formats.coco import CocoFormat
from sightline.datasets.formats.csv_tables import CsvBoxesFormat, CsvLabelsFormat
from sightline.datasets.formats.groundtruth import GroundTruthFormat
from sightline.datasets.formats.voc import VocFormat
from sightline.datasets.formats.yolo import YoloLabelsFormat, YoloNamesFormat
from sightline.datasets.issues import IssueLog

# Most specific first: a Ground Truth manifest may be named .json, and only its first line tells it from COCO.
FORMATS: tuple[Format, ...] = (
    GroundTruthFormat(),
    CocoFormat(),
    VocFormat(),
    YoloNamesFormat(),
    YoloLabelsFormat(),
    CsvBoxesFormat(),
    CsvLabelsFormat(),
)
ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl", ".manifest", ".xml", ".txt", ".names", ".yaml", ".yml", ".csv"})
KNOWN = ("COCO JSON, Pascal VOC XML, YOLO labels (.txt) with data.yaml or classes.txt, a CSV of boxes "
         "(image_path,xmin,ymin,xmax,ymax,label) or of labels (image,label), a Ground Truth manifest")


def identify(path: str, head: bytes) -> Format | None:
    """The format of the file at ``path`` whose first bytes are ``head`` (``HEAD_BYTES`` of them), if any."""
    return next((format_ for format_ in FORMATS if format_.recognises(path, head[:HEAD_BYTES])), None)


def parse_annotation_file(data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
    """The file parsed by its format; an issue saying so when it fits none ("never guess silently")."""
    format_ = identify(path, data[:HEAD_BYTES])
    if format_ is None:
        issues.add(issue_key, f"{suffix(path) or 'this'} file fits no known annotation format ({KNOWN})")
        return None
    return format_.parse(data, path=path, issue_key=issue_key, issues=issues)
