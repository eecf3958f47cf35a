"""model.onnx is published optimized for serving (onnxruntime's basic level): the same answers, less work."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from sightline_training.export import optimize_for_serving


def test_the_optimized_model_answers_the_same_with_fewer_nodes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Identity(), nn.Conv2d(8, 4, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with torch.no_grad():  # a BatchNorm with statistics of its own, so folding it changes the graph
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False, do_constant_folding=False)
    inputs = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    before = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": inputs})[0]
    nodes_before = len(onnx.load(str(path)).graph.node)

    optimize_for_serving(path)

    after = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": inputs})[0]
    assert len(onnx.load(str(path)).graph.node) < nodes_before
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5 * float(np.abs(before).max()))
    assert not list(tmp_path.glob("*.optimized.onnx"))  # replaced in place
