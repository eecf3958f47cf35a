"""Property-based fuzzing of everything predict reads from a caller before a model runs: the image decoder and
the request parser (raw images, zips, multipart forms, JSON, base64, options). Whatever the bytes, the answer
is a usable image or a 4xx error with the error shape: never another exception (a 500, a dead worker)."""
from __future__ import annotations

import base64
import io
import json
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sightline.errors import SightlineError
from sightline.imaging import decode_image
from sightline.predict_request import parse_predict_request

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)  # the same examples every run: a failure here is never a flake


def _valid_images() -> list[bytes]:
    images = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "I;16"), ("PNG", "RGBA"), ("PNG", "L")):
        buffer = io.BytesIO()
        Image.new(mode, (13, 7)).save(buffer, format=fmt)
        images.append(buffer.getvalue())
    return images


VALID = _valid_images()


@st.composite
def damaged_images(draw) -> bytes:
    """Real encoded images, cut short, with bytes overwritten, or with junk spliced in: what a flaky upload or a
    hostile caller sends."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(max_size=64))
    return bytes(data)


def only_client_errors(call) -> object:
    """The call's result, or None when it refused with a 4xx; any other outcome fails the test."""
    try:
        return call()
    except SightlineError as error:
        assert 400 <= error.status < 500, (error.status, error.code, error.message)
        assert error.code and error.message
        return None


@FUZZ
@given(st.one_of(damaged_images(), st.binary(max_size=2048)))
def test_the_decoder_answers_an_image_or_a_client_error(data):
    image = only_client_errors(lambda: decode_image(data))
    if image is not None:
        assert image.mode == "RGB" and image.width > 0 and image.height > 0


@FUZZ
@given(st.integers(1, 200_000), st.integers(1, 200_000))
def test_an_image_claiming_huge_dimensions_is_refused_before_decoding(width, height):
    # A PNG header claiming the size, no pixel data: the pixel limit is checked before anything is decoded.
    from predict_helpers import png_claiming

    try:
        decode_image(png_claiming(width, height), max_pixels=10_000)
    except SightlineError as error:
        refusal = (error.status, error.code)
    else:
        refusal = None
    if width * height > 10_000:
        assert refusal == (413, "image_too_large")
    else:
        assert refusal in (None, (400, "invalid_image"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
option_values = st.one_of(json_values, st.sampled_from(["0.5", "1", "-1", "NaN", "abc", "", "1e309", "red,blue", "7"]))


@st.composite
def json_bodies(draw) -> bytes:
    document = draw(st.dictionaries(st.sampled_from(["image", "s3_uri", "threshold", "max_results", "version",
                                                    "classes", "models", "other"]), option_values, max_size=5))
    if draw(st.booleans()):
        document["image"] = draw(st.one_of(
            st.builds(lambda data: base64.b64encode(data).decode(), st.one_of(damaged_images(), st.binary(max_size=64))),
            st.text(max_size=40)))
    document.pop("s3_uri", None)  # read from S3: the S3 tests cover it; the parser fuzz stays offline
    raw = json.dumps(document, allow_nan=True).encode()
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]  # truncated JSON
    return raw


@st.composite
def zip_bodies(draw) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        for number in range(draw(st.integers(0, 4))):
            name = draw(st.sampled_from(["a.png", "b.jpg", "c.txt", "../up.png", "/abs.png", "dir/", ".hidden.png"]))
            archive.writestr(f"{number}-{name}" if not name.endswith("/") else name,
                             draw(st.one_of(damaged_images(), st.binary(max_size=64))))
    data = buffer.getvalue()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut]  # truncated archive: its central directory is gone
    return data


@st.composite
def form_bodies(draw) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0undary", "x", "----form"]))
    parts = []
    for name in draw(st.lists(st.sampled_from(["images_file", "threshold", "max_results", "classes", "version", "x"]),
                              max_size=4)):
        payload = draw(st.one_of(damaged_images(), zip_bodies(), st.binary(max_size=32), st.just(b"0.5")))
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f"\r\n\r\n'.encode()
                     + payload + b"\r\n")
    body = b"".join(parts) + (f"--{boundary}--\r\n".encode() if draw(st.booleans()) else b"")
    header = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                   'multipart/form-data; boundary="other"']))
    return body, header


requests = st.one_of(
    st.tuples(damaged_images(), st.sampled_from(["image/png", "image/jpeg", "image/webp"])),
    st.tuples(json_bodies(), st.just("application/json")),
    st.tuples(zip_bodies(), st.sampled_from(["application/zip", "application/x-zip-compressed"])),
    form_bodies(),
    st.tuples(st.binary(max_size=256), st.sampled_from(["text/plain", "", "application/json; charset=utf-8",
                                                        "image/png", "multipart/form-data; boundary=z"])),
)
queries = st.dictionaries(st.sampled_from(["threshold", "max_results", "version", "classes", "models"]),
                          st.sampled_from(["0.5", "1", "-1", "NaN", "abc", "", "1e309", "red,blue", "7", ","]), max_size=3)


@FUZZ
@given(requests, queries, st.booleans())
def test_any_request_is_parsed_and_decoded_or_refused_with_a_client_error(request, query, several_models):
    body, content_type = request

    def parse_and_decode():
        parsed = parse_predict_request(body, content_type, query, model_id=None if several_models else "mdl-1")
        for named in parsed.images:
            if named.error is None:
                only_client_errors(lambda named=named: decode_image(named.data))  # per image: its own error in the answer
        return parsed

    parsed = only_client_errors(parse_and_decode)
    if parsed is not None:
        assert parsed.images and parsed.models
        assert parsed.threshold is None or 0.0 <= parsed.threshold <= 1.0
        assert parsed.max_results is None or 1 <= parsed.max_results <= 100
