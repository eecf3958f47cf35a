"""Evaluation decodes images as the predict function does, so it measures what predict serves."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
from PIL import Image

from sightline import imaging
from sightline_training.data import load_as_predict_does


def test_a_big_jpeg_is_decoded_as_predict_decodes_it(tmp_path):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (800, 1200, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    path = tmp_path / "big.jpg"
    path.write_bytes(buffer.getvalue())
    spec = SimpleNamespace(width=224, height=224)

    evaluated = load_as_predict_does(path, spec)
    served = imaging.decode_image(buffer.getvalue(), fit=(224, 224))

    assert evaluated.size == served.size and evaluated.size[0] < 1200  # decoded at a reduced scale
    assert imaging.source_size(evaluated) == (1200, 800)  # boxes and sizes stay the file's
    assert np.array_equal(np.asarray(evaluated), np.asarray(served))
