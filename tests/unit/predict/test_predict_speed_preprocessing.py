"""The predict path's faster preprocessing: the fused normalisation, JPEG decoding at reduced scale (``fit``), and
the thread count. Parity: the fused tensor is the formula's to float32 rounding; a draft decode moves a model's
input by a bounded amount, measured here on a photo-like JPEG."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sightline.imaging import InputSpec, decode_image, source_size, to_tensor
from sightline.inference import Predictor, predict_threads
from predict_helpers import DETECTOR_INPUT, build_detector, detector_labels, encode

IMAGENET = InputSpec("images", 224, 224, True, 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def photo(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """Gradients, shapes with hard edges and a little noise: what a photo's JPEG has to carry."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200 + 30, y / height * 180 + 40, (x + y) / (width + height) * 150 + 60], -1)
    image = Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
        box = (x0, y0, x0 + int(rng.integers(30, 200)), y0 + int(rng.integers(30, 160)))
        draw.rectangle(box, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def reference_tensor(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """The contract's formula, step by step: (pixel / scale - mean) / std, CHW."""
    pixels = np.asarray(image.resize((spec.width, spec.height), Image.Resampling.BILINEAR), dtype=np.float64)
    normalised = (pixels / spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)
    tensor = normalised.transpose(2, 0, 1)
    return tensor[np.newaxis] if spec.batch else tensor


@pytest.mark.parametrize("spec", [IMAGENET, InputSpec("x", 40, 24, False, 255.0, (0, 0, 0), (1, 1, 1)),
                                  InputSpec("x", 16, 16, True, 1.0, (128.0, 100.0, 90.0), (64.0, 32.0, 16.0))])
def test_the_fused_tensor_is_the_formula_to_float32_rounding(spec):
    tensor = to_tensor(photo(), spec)
    expected = reference_tensor(photo(), spec)
    assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
    assert tensor.shape == expected.shape
    # A few float32 ulps of the largest value: rounding, not a different formula.
    assert np.abs(tensor - expected).max() <= 4 * np.finfo(np.float32).eps * max(1.0, np.abs(expected).max())


def test_fit_decodes_a_large_jpeg_smaller_and_keeps_its_size_as_sent():
    data = encode(photo(), "JPEG", quality=90)
    drafted = decode_image(data, fit=(224, 224))
    assert drafted.mode == "RGB"
    assert drafted.size == (320, 240)  # half scale: the largest that stays at least 224 on both sides
    assert source_size(drafted) == (640, 480)
    full = decode_image(data)
    assert full.size == (640, 480) and source_size(full) == (640, 480)
    # 320 pixels wide fits 320 but 480 high / 320 is under 2: no smaller scale then.
    assert decode_image(data, fit=(320, 320)).size == (640, 480)


def test_fit_follows_the_exif_orientation():
    # Stored 640x480 on its side (orientation 6): upright it is 480x640, and the fit is in upright pixels.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(photo(), "JPEG", exif=exif, quality=90)
    drafted = decode_image(data, fit=(224, 224))
    assert drafted.size == (240, 320)
    assert source_size(drafted) == (480, 640)
    assert np.abs(np.asarray(drafted.resize((48, 64)), dtype=float)
                  - np.asarray(decode_image(data).resize((48, 64)), dtype=float)).mean() < 3


def test_fit_leaves_other_formats_alone():
    image = decode_image(encode(photo(), "PNG"), fit=(224, 224))
    assert image.size == (640, 480) and source_size(image) == (640, 480)


# Measured on photo() (seeds 0 to 4, qualities 85 and 95): the drafted input differs from the full decode's by a
# mean of 0.002 of the 0..1 pixel range (half a grey level) and by at most 0.14 at the hard edges of shapes (the
# DCT's half-scale decode against Pillow's bilinear over twice the pixels). Training and evaluation decode in full
# (sightline_training.data.load_rgb), so this is what served inputs may differ from theirs by; bounded here so a
# change of decoder or resampling shows.
DRAFT_MEAN_BOUND = 0.005
DRAFT_MAX_BOUND = 0.2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_drafted_model_input_stays_within_its_bound_of_the_full_decode(seed):
    data = encode(photo(seed=seed), "JPEG", quality=85)
    spec = InputSpec("images", 224, 224, True, 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # on the 0..1 scale
    drafted = to_tensor(decode_image(data, fit=(224, 224)), spec)
    full = to_tensor(decode_image(data), spec)
    difference = np.abs(drafted - full)
    assert difference.mean() <= DRAFT_MEAN_BOUND
    assert difference.max() <= DRAFT_MAX_BOUND


def test_a_detector_on_a_drafted_image_answers_in_the_sent_image_pixels():
    predictor = Predictor(build_detector(), detector_labels())
    image = Image.new("RGB", (DETECTOR_INPUT["width"] * 8, DETECTOR_INPUT["height"] * 8), (255, 255, 255))
    data = encode(image, "JPEG", quality=95)
    full = predictor.predict(decode_image(data), None, 10)
    drafted = predictor.predict(decode_image(data, fit=(DETECTOR_INPUT["width"], DETECTOR_INPUT["height"])),
                                None, 10)
    assert full and [p["label"] for p in drafted] == [p["label"] for p in full]
    for ours, theirs in zip(drafted, full):
        assert ours["box"] == pytest.approx(theirs["box"], abs=0.01)
        assert ours["score"] == pytest.approx(theirs["score"], abs=0.01)


@pytest.mark.parametrize(("environ", "expected"), [
    ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048"}, 1),  # 1.16 vCPUs
    ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}, 1),
    ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538", "SIGHTLINE_PREDICT_THREADS": "1"}, 1),
    ({"SIGHTLINE_PREDICT_THREADS": "3"}, 3),
])
def test_threads_follow_the_function_memory(environ, expected):
    assert predict_threads(environ) == expected


def test_threads_never_exceed_the_cores_seen(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert predict_threads({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"}) == 2
    assert predict_threads({}) == 2

