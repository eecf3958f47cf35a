"""Video frames for batch predictions: PyAV decodes, frames are sampled at a requested rate, hostile files refused.

Only the batch prediction function ships PyAV (``av``); nothing the predict function imports imports this module.
Limits hold against files made to hurt: the container must be one of ``CONTAINER_FORMATS``, its duration,
its frames' dimensions and the number of frames decoded are capped, and decoding stops at the caller's deadline.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from sightline.errors import BadRequest, PayloadTooLarge

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
# FFmpeg's demuxer names (``container.format.name``) of those files; anything else FFmpeg can open is refused.
CONTAINER_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi")

DEFAULT_FRAMES_PER_SECOND = 1.0
MAX_FRAMES_PER_SECOND = 30.0
DEFAULT_MAX_FRAMES = 300
HARD_MAX_FRAMES = 1_000  # sampled frames of one video: each is a model run and a line
MAX_VIDEO_BYTES = 1024 * 1024 * 1024  # the object is copied to /tmp (the function's ephemeral storage is 2 GiB)
MAX_DURATION_SECONDS = 3 * 3600.0
MAX_FRAME_SIDE = 4096
MAX_FRAME_PIXELS = 4096 * 2160
# Frames decoded (sampled or not): a file of millions of tiny frames must not keep a function busy.
MAX_DECODED_FRAMES = 200_000


class VideoError(BadRequest):
    """A video that cannot be read or breaks a limit: its object's line carries this error."""

    code = "invalid_video"


@dataclass(frozen=True)
class VideoOptions:
    frames_per_second: float = DEFAULT_FRAMES_PER_SECOND
    max_frames: int = DEFAULT_MAX_FRAMES

    def to_dict(self) -> dict[str, Any]:
        return {"frames_per_second": self.frames_per_second, "max_frames": self.max_frames}


@dataclass(frozen=True)
class Frame:
    index: int  # the frame's position in the video stream, from 0
    timestamp_seconds: float
    image: Image.Image


def parse_video_options(value: Any) -> VideoOptions:
    """``{"frames_per_second": number, "max_frames": int}``, both optional; a 400 naming what is wrong."""
    if value is None:
        return VideoOptions()
    if not isinstance(value, dict):
        raise BadRequest('video must be an object like {"frames_per_second": 1, "max_frames": 300}',
                         code="invalid_video_options")
    unknown = sorted(set(value) - {"frames_per_second", "max_frames"})
    if unknown:
        raise BadRequest(f"unknown video fields: {', '.join(unknown)} (allowed: frames_per_second, max_frames)",
                         code="invalid_video_options")
    rate = value.get("frames_per_second", DEFAULT_FRAMES_PER_SECOND)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
            or not 0 < rate <= MAX_FRAMES_PER_SECOND:
        raise BadRequest(f"video.frames_per_second must be a number above 0 and at most {MAX_FRAMES_PER_SECOND:g}, "
                         f"got {rate!r}", code="invalid_video_options")
    frames = value.get("max_frames", DEFAULT_MAX_FRAMES)
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= HARD_MAX_FRAMES:
        raise BadRequest(f"video.max_frames must be an integer from 1 to {HARD_MAX_FRAMES}, got {frames!r}",
                         code="invalid_video_options")
    return VideoOptions(float(rate), frames)


def is_video_name(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in VIDEO_EXTENSIONS


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes are those of an MP4/QuickTime, Matroska/WebM or AVI file."""
    return (head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3"
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI "))


def sample_frames(path: str, options: VideoOptions, *, out_of_time: Callable[[], bool] = lambda: False,
                  ) -> Iterator[Frame]:
    """Upright RGB frames of the file's first video stream, one per ``1 / frames_per_second`` seconds (the first
    frame at or after each sampling time), at most ``max_frames``. Raises VideoError (or PayloadTooLarge for a
    limit) before or while decoding; ``out_of_time`` is asked before every frame."""
    import av  # only the batch prediction function ships PyAV

    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise VideoError(f"not a readable video: {error}") from None
    with container:
        if container.format.name not in CONTAINER_FORMATS:
            raise VideoError(f"container {container.format.name!r} is not one of mp4, mov, webm, mkv or avi")
        if not container.streams.video:
            raise VideoError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _check_size(stream.codec_context.width or 0, stream.codec_context.height or 0)
        if container.duration is not None and container.duration / av.time_base > MAX_DURATION_SECONDS:
            raise PayloadTooLarge(f"video is {container.duration / av.time_base:.0f} s long; the limit is "
                                  f"{MAX_DURATION_SECONDS:.0f} s", code="video_too_long")
        yield from _sampled(container.decode(stream), options, out_of_time)


def _sampled(frames: Iterator[Any], options: VideoOptions, out_of_time: Callable[[], bool]) -> Iterator[Frame]:
    import av

    step = 1.0 / options.frames_per_second
    next_time = 0.0
    sampled = 0
    try:
        for index, frame in enumerate(frames):
            if index >= MAX_DECODED_FRAMES:
                raise PayloadTooLarge(f"video has more than {MAX_DECODED_FRAMES} frames", code="video_too_long")
            if out_of_time():
                raise VideoError(f"ran out of time after {sampled} sampled frames", code="time_limit")
            timestamp = float(frame.time) if frame.time is not None else index * step
            if timestamp > MAX_DURATION_SECONDS:
                raise PayloadTooLarge(f"video runs past {MAX_DURATION_SECONDS:.0f} s", code="video_too_long")
            if timestamp + 1e-6 < next_time:
                continue
            _check_size(frame.width, frame.height)  # a stream may change size midway
            yield Frame(index, round(timestamp, 3), frame.to_image().convert("RGB"))
            sampled += 1
            if sampled >= options.max_frames:
                return
            # The next sampling time after this frame's (a long gap in the video skips the times inside it).
            next_time = (math.floor(timestamp / step + 1e-6) + 1) * step
    except av.FFmpegError as error:
        raise VideoError(f"video could not be decoded after {sampled} sampled frames: {error}") from None


def _check_size(width: int, height: int) -> None:
    if width > MAX_FRAME_SIDE or height > MAX_FRAME_SIDE or width * height > MAX_FRAME_PIXELS:
        raise PayloadTooLarge(f"video frames are {width}x{height}; the limit is {MAX_FRAME_SIDE} a side and "
                              f"{MAX_FRAME_PIXELS} pixels", code="video_too_large")
