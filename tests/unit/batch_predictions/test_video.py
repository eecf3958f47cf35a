"""Video frames sampled with PyAV at a requested rate, and the limits that hold against hostile files."""
from __future__ import annotations

import pytest

from sightline import video
from sightline.errors import BadRequest, PayloadTooLarge


def test_frames_are_sampled_at_the_requested_rate(video_file):
    path = video_file(seconds=3.0, rate=10)
    frames = list(video.sample_frames(str(path), video.VideoOptions(frames_per_second=2.0, max_frames=100)))
    assert [frame.timestamp_seconds for frame in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [frame.index for frame in frames] == [0, 5, 10, 15, 20, 25]
    assert frames[0].image.size == (32, 24) and frames[0].image.mode == "RGB"
    red, green, blue = frames[0].image.getpixel((16, 12))
    assert red > 180 and green < 60 and blue < 60


def test_max_frames_caps_the_samples(video_file):
    path = video_file(seconds=3.0, rate=10)
    frames = list(video.sample_frames(str(path), video.VideoOptions(frames_per_second=10.0, max_frames=4)))
    assert [frame.index for frame in frames] == [0, 1, 2, 3]


def test_a_rate_above_the_videos_own_takes_every_frame_once(video_file):
    path = video_file(seconds=1.0, rate=5)
    frames = list(video.sample_frames(str(path), video.VideoOptions(frames_per_second=30.0, max_frames=100)))
    assert [frame.index for frame in frames] == [0, 1, 2, 3, 4]


def test_matroska_is_read_too(video_file):
    path = video_file("clip.mkv", container="matroska", seconds=1.0, rate=4)
    assert len(list(video.sample_frames(str(path), video.VideoOptions(1.0, 10)))) == 1


def test_other_containers_are_refused(video_file):
    path = video_file("clip.ts", container="mpegts", seconds=1.0, rate=4)
    with pytest.raises(video.VideoError, match="mpegts"):
        list(video.sample_frames(str(path), video.VideoOptions()))


def test_a_file_that_is_not_a_video_is_refused(tmp_path):
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"garbage" * 100)
    with pytest.raises(video.VideoError):
        list(video.sample_frames(str(path), video.VideoOptions()))


def test_frames_over_the_size_limit_are_refused_before_decoding(video_file, monkeypatch):
    path = video_file(size=(64, 48))
    monkeypatch.setattr(video, "MAX_FRAME_SIDE", 48)
    with pytest.raises(PayloadTooLarge) as refused:
        list(video.sample_frames(str(path), video.VideoOptions()))
    assert refused.value.code == "video_too_large"


def test_too_many_decoded_frames_stop_the_video(video_file, monkeypatch):
    path = video_file(seconds=2.0, rate=10)
    monkeypatch.setattr(video, "MAX_DECODED_FRAMES", 12)
    with pytest.raises(PayloadTooLarge, match="more than 12 frames"):
        list(video.sample_frames(str(path), video.VideoOptions(frames_per_second=0.1, max_frames=5)))


def test_a_long_video_is_refused_by_its_declared_duration(video_file, monkeypatch):
    path = video_file(seconds=3.0, rate=10)
    monkeypatch.setattr(video, "MAX_DURATION_SECONDS", 1.0)
    with pytest.raises(PayloadTooLarge) as refused:
        list(video.sample_frames(str(path), video.VideoOptions()))
    assert refused.value.code == "video_too_long"


def test_decoding_stops_when_time_runs_out(video_file):
    path = video_file(seconds=2.0, rate=10)
    calls = []

    def out_of_time() -> bool:
        calls.append(1)
        return len(calls) > 3

    frames = video.sample_frames(str(path), video.VideoOptions(frames_per_second=10.0, max_frames=100),
                                 out_of_time=out_of_time)
    with pytest.raises(video.VideoError) as refused:
        list(frames)
    assert refused.value.code == "time_limit"


@pytest.mark.parametrize("head, expected", [
    (b"\x00\x00\x00\x18ftypmp42", True),
    (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00", True),
    (b"RIFF\x00\x00\x00\x00AVI LIST", True),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", False),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", False),
])
def test_videos_are_recognised_by_content(head, expected):
    assert video.looks_like_video(head) is expected


def test_options_default_and_are_checked():
    assert video.parse_video_options(None) == video.VideoOptions(1.0, 300)
    assert video.parse_video_options({"frames_per_second": 0.5, "max_frames": 10}) == video.VideoOptions(0.5, 10)
    for bad in ({"frames_per_second": 0}, {"frames_per_second": 31}, {"frames_per_second": "1"},
                {"max_frames": 0}, {"max_frames": 1001}, {"max_frames": 2.5}, {"fps": 1}, [1]):
        with pytest.raises(BadRequest) as refused:
            video.parse_video_options(bad)
        assert refused.value.code == "invalid_video_options"
