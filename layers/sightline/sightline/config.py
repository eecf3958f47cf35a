"""Runtime configuration: every setting flows from the template's environment variables, read here only."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    table_name: str
    data_bucket: str
    artifact_bucket: str
    event_bus_name: str
    training_state_machine_arn: str
    max_image_bytes: int
    max_image_pixels: int
    max_archive_bytes: int
    max_archive_members: int
    validation_fraction: float
    dataset_queue_url: str  # the register function's queue: S3 notifications and queued work
    training_job_queue: str  # the Batch job queue training jobs run in (cancelling finds a version's job there)
    # A zip with more entries, or expanding to more bytes, than one chunk is registered in chunks of this size
    # (queued work, one invocation each); such a zip may be up to max_chunked_archive_bytes.
    archive_chunk_members: int = 5_000
    archive_chunk_bytes: int = 1024 * 1024 * 1024
    max_chunked_archive_bytes: int = 64 * 1024 * 1024 * 1024
    archive_chunk_queue_url: str = ""  # the queue of archive chunks (one per invocation); "" = dataset_queue_url
    # Delayed messages that bring debounced retraining back (retraining.py); "" = new data never waits.
    retrain_debounce_queue_url: str = ""
    # The CPU Batch queue and job definition of evaluations (POST /v1/models/{id}/versions/{v}/evaluations).
    evaluation_job_queue: str = ""
    evaluation_job_definition: str = ""
    # Powertools Metrics' namespace of the functions' EMF metrics (the template's POWERTOOLS_METRICS_NAMESPACE).
    metrics_namespace: str = "Sightline"
    # The batch prediction workflow (POST /v1/models/{id}/batch-predictions: statemachines/batch_predict.asl.json).
    batch_prediction_state_machine_arn: str = ""
    # Seconds a warm predict container remembers which version serves a model (sightline.serving); 0 = never.
    serving_cache_seconds: float = 5.0


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process; tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings(
        table_name=os.environ.get("TABLE_NAME", ""),
        data_bucket=os.environ.get("DATA_BUCKET", ""),
        artifact_bucket=os.environ.get("ARTIFACT_BUCKET", ""),
        event_bus_name=os.environ.get("EVENT_BUS_NAME", "default"),
        training_state_machine_arn=os.environ.get("TRAINING_STATE_MACHINE_ARN", ""),
        # API Gateway caps request bodies at 10 MB and Lambda payloads at 6 MB; base64 costs a third.
        max_image_bytes=_int("MAX_IMAGE_BYTES", 4 * 1024 * 1024),
        # Decompression-bomb guard: Pillow's own default warning threshold is ~89 Mpx.
        max_image_pixels=_int("MAX_IMAGE_PIXELS", 40_000_000),
        max_archive_bytes=_int("MAX_ARCHIVE_BYTES", 2 * 1024 * 1024 * 1024),
        max_archive_members=_int("MAX_ARCHIVE_MEMBERS", 200_000),
        validation_fraction=_float("VALIDATION_FRACTION", 0.2),
        dataset_queue_url=os.environ.get("DATASET_QUEUE_URL", ""),
        training_job_queue=os.environ.get("TRAINING_JOB_QUEUE", ""),
        archive_chunk_members=max(1, _int("ARCHIVE_CHUNK_MEMBERS", 5_000)),
        archive_chunk_bytes=max(1, _int("ARCHIVE_CHUNK_BYTES", 1024 * 1024 * 1024)),
        max_chunked_archive_bytes=_int("MAX_CHUNKED_ARCHIVE_BYTES", 64 * 1024 * 1024 * 1024),
        archive_chunk_queue_url=os.environ.get("ARCHIVE_CHUNK_QUEUE_URL", ""),
        retrain_debounce_queue_url=os.environ.get("RETRAIN_DEBOUNCE_QUEUE_URL", ""),
        evaluation_job_queue=os.environ.get("EVALUATION_JOB_QUEUE", ""),
        evaluation_job_definition=os.environ.get("EVALUATION_JOB_DEFINITION", ""),
        metrics_namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Sightline",
        batch_prediction_state_machine_arn=os.environ.get("BATCH_PREDICTION_STATE_MACHINE_ARN", ""),
        serving_cache_seconds=max(0.0, _float("SERVING_CACHE_SECONDS", 5.0)),
    )
