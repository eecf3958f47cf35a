"""One batch of a batch prediction: the Distributed Map's item processor (``functions/batch_predict``).

The Map's ItemBatcher hands each invocation ``{"BatchInput": {...}, "Items": [<ListObjectsV2 entries>]}``. Every
object becomes one JSON Lines line (an image: its predictions; an error: ``{"key", "error"}``), a video one line
per sampled frame (``{"key", "frame", "timestamp_seconds", "predictions"}``). The batch's lines go to one part
file whose name is derived from its keys, so a retried batch overwrites its own part, and the part is counted on
the job's record once (a PART item written in the same transaction as the counters).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.contract import BATCH_PREDICTION_PARTS, batch_prediction_prefix
from sightline.errors import PayloadTooLarge, SightlineError
from sightline.imaging import decode_image
from sightline.inference import DEFAULT_MAX_RESULTS, Predictor, load_predictor
from sightline.training_failures import one_line
from sightline.video import MAX_VIDEO_BYTES, VideoOptions, is_video_name, looks_like_video, sample_frames

logger = Logger(child=True)

# Time kept back from the function's limit to write the part and count it.
RESERVE_SECONDS = 30.0
_SNIFF_BYTES = 16
_serializer = TypeSerializer()


@dataclass
class BatchResult:
    lines: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0  # objects answered
    failed: int = 0  # objects whose line is an error
    frames: int = 0  # video frames answered

    def error(self, key: str, error: SightlineError, **extra: Any) -> None:
        self.lines.append({"key": key, **extra, **error.to_dict()})
        self.failed += 1


@dataclass(frozen=True)
class Job:
    """What every batch of one batch prediction shares (the Map's BatchInput)."""

    batch_prediction_id: str
    bucket: str
    model_id: str
    version: dict[str, Any]  # {"version", "artifacts": {"model", "labels"}, "integrity"}: what load_predictor reads
    threshold: float | None
    max_results: int | None
    classes: tuple[str, ...] | None
    video: VideoOptions

    @classmethod
    def from_batch_input(cls, batch_input: dict[str, Any]) -> Job:
        options = batch_input.get("options") or {}
        video = batch_input.get("video") or {}
        return cls(
            batch_prediction_id=str(batch_input["batch_prediction_id"]),
            bucket=str(batch_input["bucket"]),
            model_id=str(batch_input["model_id"]),
            version={"version": int(batch_input["version"]), "artifacts": dict(batch_input["artifacts"]),
                     "integrity": dict(batch_input.get("integrity") or {})},
            threshold=options.get("threshold"),
            max_results=options.get("max_results"),
            classes=tuple(options["classes"]) if options.get("classes") else None,
            video=VideoOptions(**video) if video else VideoOptions(),
        )


def part_id(items: list[dict[str, Any]]) -> str:
    """The same objects always make the same part (a retry overwrites it)."""
    digest = hashlib.sha256("\n".join(str(item.get("Key")) for item in items).encode())
    return digest.hexdigest()[:32]


def part_key(batch_prediction_id: str, part: str) -> str:
    return f"{batch_prediction_prefix(batch_prediction_id)}{BATCH_PREDICTION_PARTS}{part}.jsonl"


def predict_batch(event: dict[str, Any], remaining_seconds: Callable[[], float]) -> dict[str, Any]:
    """Predict every object of the batch, write its part and count it; a small summary (the Map's result)."""
    job = Job.from_batch_input(event["BatchInput"])
    items = list(event.get("Items") or [])
    deadline = time.monotonic() + remaining_seconds() - RESERVE_SECONDS
    predictor = load_predictor(job.model_id, job.version)  # once per warm container (cached)
    result = BatchResult()
    for item in items:
        key = str(item.get("Key"))
        if time.monotonic() >= deadline:
            result.error(key, SightlineError("the batch ran out of time before this object", code="time_limit"))
            continue
        _predict_object(job, predictor, key, int(item.get("Size") or 0), result, deadline)
    return _record(job, items, result)


def record_batch_failure(event: dict[str, Any]) -> dict[str, Any]:
    """The batch's invocation failed after its retries: each of its objects gets an error line, so the job goes on
    and the results say which objects were not predicted and why."""
    job = Job.from_batch_input(event["BatchInput"])
    items = list(event.get("Items") or [])
    error = event.get("error") or {}
    reason = one_line(f"{error.get('Error', 'error')}: {error.get('Cause', '')}")[:1000]
    result = BatchResult()
    for item in items:
        result.error(str(item.get("Key")), SightlineError(f"the batch failed: {reason}", code="batch_failed"))
    return _record(job, items, result, overwrite=False)


# ---------------------------------------------------------------- one object


def _predict_object(job: Job, predictor: Predictor, key: str, size: int, result: BatchResult,
                    deadline: float) -> None:
    s3 = aws.client("s3")
    max_image = get_settings().max_image_bytes
    try:
        if is_video_name(key) or (size > max_image and looks_like_video(_head(job.bucket, key))):
            _predict_video(job, predictor, key, size, result, deadline)
            return
        if size > max_image:
            raise PayloadTooLarge(f"image is {size} bytes; the limit is {max_image} bytes", code="image_too_large")
        data = s3.get_object(Bucket=job.bucket, Key=key)["Body"].read()
        if looks_like_video(data[:_SNIFF_BYTES]):
            _predict_video(job, predictor, key, len(data), result, deadline, data=data)
            return
        image = decode_image(data)
        result.lines.append({"key": key, "image": {"width": image.width, "height": image.height},
                             "predictions": predictor.predict(image, job.threshold, _max_results(job, predictor),
                                                              job.classes)})
        result.done += 1
    except SightlineError as error:  # this object's own problem (4xx); a server fault goes on failing the batch
        if error.status >= 500:
            raise
        result.error(key, error)
    except ClientError as error:
        if not aws.is_not_found(error):
            raise
        result.error(key, SightlineError("the object was deleted before it was read", code="object_not_found"))


def _predict_video(job: Job, predictor: Predictor, key: str, size: int, result: BatchResult, deadline: float,
                   data: bytes | None = None) -> None:
    if size > MAX_VIDEO_BYTES:
        raise PayloadTooLarge(f"video is {size} bytes; the limit is {MAX_VIDEO_BYTES} bytes", code="video_too_large")
    max_results = _max_results(job, predictor)
    handle, path = tempfile.mkstemp(prefix="sightline-video-")
    os.close(handle)
    frames = 0
    try:
        if data is None:
            aws.client("s3").download_file(job.bucket, key, path)
        else:
            with open(path, "wb") as file:
                file.write(data)
        try:
            for frame in sample_frames(path, job.video, out_of_time=lambda: time.monotonic() >= deadline):
                result.lines.append({"key": key, "frame": frame.index, "timestamp_seconds": frame.timestamp_seconds,
                                     "predictions": predictor.predict(frame.image, job.threshold, max_results,
                                                                      job.classes)})
                frames += 1
        except SightlineError as error:
            if error.status >= 500:
                raise
            # Frames already answered keep their lines; the video itself counts as failed, saying how far it got.
            result.frames += frames
            result.error(key, error, frames_answered=frames)
            return
    finally:
        os.unlink(path)
    if frames == 0:
        result.error(key, SightlineError("the video has no frames", code="invalid_video"))
        return
    result.frames += frames
    result.done += 1


def _head(bucket: str, key: str) -> bytes:
    response = aws.client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{_SNIFF_BYTES - 1}")
    return response["Body"].read()


def _max_results(job: Job, predictor: Predictor) -> int:
    return DEFAULT_MAX_RESULTS[predictor.task] if job.max_results is None else int(job.max_results)


# ---------------------------------------------------------------- writing and counting


def _record(job: Job, items: list[dict[str, Any]], result: BatchResult, *, overwrite: bool = True) -> dict[str, Any]:
    part = part_id(items)
    key = part_key(job.batch_prediction_id, part)
    settings = get_settings()
    table = aws.table(settings.table_name)
    item_key = {"pk": keys.batch_prediction_pk(job.batch_prediction_id), "sk": keys.batch_part_sk(part)}
    if not overwrite and "Item" in table.get_item(Key=item_key, ConsistentRead=True):
        return {"part": key, "already_recorded": True}  # the batch had succeeded after all: its lines stand
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in result.lines).encode()
    aws.client("s3").put_object(Bucket=settings.artifact_bucket, Key=key, Body=body,
                                ContentType="application/x-ndjson")
    summary = {"part": key, "objects": len(items), "done": result.done, "failed": result.failed,
               "frames": result.frames}
    try:
        aws.client("dynamodb").transact_write_items(TransactItems=[
            {"Put": {"TableName": settings.table_name,
                     "Item": _serialize({**item_key, **summary}),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": {"TableName": settings.table_name,
                        "Key": _serialize({"pk": item_key["pk"], "sk": keys.META}),
                        "UpdateExpression": "ADD objects_done :d, objects_failed :f, frames :v, parts :one",
                        "ExpressionAttributeValues": _serialize(
                            {":d": result.done, ":f": result.failed, ":v": result.frames, ":one": 1})}},
        ])
    except ClientError as error:
        reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons") or []]
        if "ConditionalCheckFailed" not in reasons:
            raise  # throttled or raced: the invocation fails and the Map's retry writes the same part again
        summary["already_recorded"] = True  # a retry of a batch already counted: the same part, counted once
    logger.info("batch predicted", extra={"batch_prediction_id": job.batch_prediction_id, **summary})
    return summary


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in item.items()}
