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


def model_pk(model_id: str) -> str:
    return f"MODEL#{model_id}"


def version_sk(version: int) -> str:
    # Zero-padded so versions sort numerically.
    return f"VERSION#{version:06d}"


def image_key(sha256: str, extension: str) -> str:
    """Content-addressed, immutable copy of a registered image in the artifact bucket."""
    return f"images/{sha256[:2]}/{sha256}.{extension}"


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
