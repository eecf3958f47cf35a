"""Key layout of the single DynamoDB table and of the registry's part of the artifact bucket.

(Where training reads and writes, the manifest, model and checkpoint keys, is in ``sightline.contract``.)

Table: partition key ``pk``, sort key ``sk``; global secondary index ``gsi1`` (``gsi1pk``, ``gsi1sk``) lists
datasets and models newest first.
"""
from __future__ import annotations

import hashlib

META = "META"
GSI1 = "gsi1"
DATASETS_INDEX_PK = "DATASETS"
MODELS_INDEX_PK = "MODELS"


def dataset_pk(name: str) -> str:
    return f"DATASET#{name}"


def source_sk(key: str) -> str:
    """One item per object uploaded under ``datasets/<name>/``."""
    return f"SOURCE#{key}"


def class_sk(label: str) -> str:
    """A dataset's class: its image and box counts (classes are items, so 10,000 of them fit)."""
    return f"CLASS#{label}"


def issue_sk(position: int) -> str:
    """A dataset's issue, in the order found."""
    return f"ISSUE#{position:07d}"


def entry_sk(sha256: str) -> str:
    """A dataset's entry: one image (by content), its labels or boxes."""
    return f"ENTRY#{sha256}"


def snapshot_sk(snapshot_id: str) -> str:
    """An immutable training snapshot that includes the dataset."""
    return f"SNAPSHOT#{snapshot_id}"


def image_pk(sha256: str) -> str:
    """Who references a stored image: one item per dataset and per snapshot (see ``image_ref_sk``)."""
    return f"IMAGE#{sha256}"


def dataset_ref_sk(name: str) -> str:
    return f"REF#DATASET#{name}"


def snapshot_ref_sk(snapshot_id: str) -> str:
    return f"REF#SNAPSHOT#{snapshot_id}"


DERIVED_PREFIXES = ("CLASS#", "ISSUE#", "ENTRY#")  # what a recompute rewrites


def model_pk(model_id: str) -> str:
    return f"MODEL#{model_id}"


VERSION_PREFIX = "VERSION#"


def version_sk(version: int) -> str:
    # Zero-padded so versions sort numerically.
    return f"{VERSION_PREFIX}{version:06d}"


def batch_prediction_pk(batch_prediction_id: str) -> str:
    return f"BATCHPREDICTION#{batch_prediction_id}"


def batch_part_sk(part_id: str) -> str:
    """One batch of objects whose lines were written and counted (a retried batch is counted once)."""
    return f"PART#{part_id}"


API_KEYS_INDEX_PK = "APIKEYS"


def api_key_pk(key_id: str) -> str:
    """A scoped API key: its hash, name and scopes (``sightline.api_keys``), never the key itself."""
    return f"APIKEY#{key_id}"


def image_key(sha256: str, extension: str) -> str:
    """Content-addressed, immutable copy of a registered image in the artifact bucket."""
    return f"images/{sha256[:2]}/{sha256}.{extension}"


def thumbnail_key(sha256: str) -> str:
    """A JPEG at most ``images.THUMBNAIL_SIDE`` pixels on its longer side, of an image bigger than that."""
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


def source_result_key(dataset: str, source_key: str) -> str:
    """Normalised parse of one uploaded object (archive or annotation file) in the artifact bucket."""
    digest = hashlib.sha256(source_key.encode()).hexdigest()
    return f"registry/datasets/{dataset}/sources/{digest}.json"


def split_location(location: str, default_bucket: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI, or of a bare key in ``default_bucket``."""
    if location.startswith("s3://"):
        bucket, _, key = location[len("s3://"):].partition("/")
        if not bucket or not key:
            raise ValueError(f"not an S3 object URI: {location!r}")
        return bucket, key
    return default_bucket, location
