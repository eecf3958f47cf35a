"""benchmarks/train.py runs (tiny sizes) and reports both loops on the same model, data and batch size."""
from __future__ import annotations

import json
from pathlib import Path

from support import load_module

benchmark = load_module(Path(__file__).resolve().parents[3] / "benchmarks" / "train.py")


def test_the_benchmark_reports_both_loops_per_template(capsys):
    argv = ["--templates", "mobilenet_v3_small,ssdlite320_mobilenet_v3_large", "--device", "cpu", "--steps", "1",
            "--warmup", "0", "--rounds", "1", "--batch-size", "2", "--image-size", "32", "--json"]
    assert benchmark.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["template"] for row in rows] == ["mobilenet_v3_small", "ssdlite320_mobilenet_v3_large"]
    for row in rows:
        assert (row["device"], row["precision"], row["memory_format"], row["batch_size"]) == (
            "cpu", "fp32", "contiguous", 2)
        assert row["plain_images_per_second"] > 0 and row["sightline_images_per_second"] > 0
        assert abs(row["ratio"] - row["sightline_images_per_second"] / row["plain_images_per_second"]) < 0.01


def test_an_unknown_template_is_refused(capsys):
    assert benchmark.main(["--templates", "nope"]) == 2
    assert "unknown templates: nope" in capsys.readouterr().err
