"""What the batch prediction tests share: the predict tests' tiny real ONNX models (``helpers``) and short videos
written with PyAV itself. Fixtures built on these are in this folder's ``conftest.py``."""
from __future__ import annotations

from pathlib import Path

from support import REPO, load_module

helpers = load_module(REPO / "tests" / "unit" / "predict" / "predict_helpers.py")


def write_video(path: Path, *, seconds: float = 2.0, rate: int = 10, size: tuple[int, int] = (32, 24),
                colour: tuple[int, int, int] = (220, 20, 20), codec: str = "mpeg4", container: str = "mp4") -> Path:
    """A short solid-colour video, written with PyAV itself."""
    import av
    import numpy as np

    with av.open(str(path), mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        pixels[:] = colour
        for _ in range(int(seconds * rate)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path
