"""The precision and memory format a job computes with (precision.py), and the params that choose them."""
from __future__ import annotations

import pytest
import torch
from sightline.errors import BadRequest
from sightline.templates import TEMPLATES, get_template
from sightline_training import engine, precision
from torch import nn

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU; nothing runs on CUDA here


@pytest.mark.parametrize("requested, bf16, task, expected", [
    ("auto", True, "classification", ("bf16", True)),
    ("auto", False, "classification", ("fp16", True)),
    ("auto", True, "detection", ("bf16", False)),  # detectors batch their images inside: default layout
    ("bf16", False, "multilabel", ("fp16", True)),  # asked for, but this GPU has none: fp16, logged
    ("fp32", True, "classification", ("fp32", True)),
    ("fp16", True, "detection", ("fp16", False)),
])
def test_on_a_gpu_auto_is_bf16_where_supported_and_classifiers_go_channels_last(monkeypatch, requested, bf16, task,
                                                                                 expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    chosen = precision.choose(requested, CUDA, task)
    assert (chosen.name, chosen.channels_last) == expected
    assert chosen.to_dict()["requested"] == requested


@pytest.mark.parametrize("requested, expected", [("auto", "fp32"), ("fp32", "fp32"), ("fp16", "fp32"),
                                                 ("bf16", "bf16")])
def test_a_cpu_trains_in_fp32_unless_bf16_is_asked_for(requested, expected):
    chosen = precision.choose(requested, CPU, "classification")
    assert (chosen.name, chosen.channels_last, chosen.grad_scaler(CPU).is_enabled()) == (expected, False, False)


def test_the_memory_format_can_be_forced_either_way():
    assert precision.choose("auto", CPU, "classification", channels_last="1").channels_last is True
    assert precision.choose("auto", CUDA, "classification", channels_last="0").channels_last is False
    with pytest.raises(ValueError):
        precision.choose("auto", CPU, "classification", channels_last="yes")


def test_only_fp16_scales_the_loss():
    assert precision.Precision("fp16").grad_scaler(CPU).is_enabled() is False  # the scaler is for CUDA
    assert precision.Precision("bf16").dtype is torch.bfloat16 and precision.Precision("fp32").autocast is False


def test_a_bf16_channels_last_epoch_trains_on_the_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2))
    chosen = precision.choose("bf16", CPU, "classification", channels_last="1")
    model = model.to(memory_format=chosen.memory_format)
    batches = [(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    before = model[0].weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = engine.train_one_epoch(model, optimizer, batches, CPU, 0, chosen.grad_scaler(CPU), "classification",
                                  lambda: None, precision=chosen)
    assert torch.isfinite(torch.tensor(loss)) and 0.0 < loss < 10.0
    assert model[0].weight.dtype is torch.float32  # autocast computes in bf16; the weights stay fp32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(before, model[0].weight)
    engine.recompute_batch_norm_statistics(model, batches, CPU, "classification", lambda: None, precision=chosen)
    assert torch.isfinite(model[1].running_mean).all()


def test_every_template_has_gpus_and_precision_params():
    for template in TEMPLATES.values():
        described = template.describe()["params"]
        assert described["gpus"] == {"type": "integer", "default": 1, "minimum": 1, "maximum": 8,
                                     "description": described["gpus"]["description"]}
        assert described["precision"]["enum"] == ["auto", "fp32", "fp16", "bf16"]
        assert described["precision"]["default"] == "auto" and "pattern" not in described["precision"]
    template = get_template("mobilenet_v3_small")
    assert template.resolve_params({"gpus": 4, "precision": "bf16"})["gpus"] == 4
    for bad, message in [({"gpus": 9}, "params.gpus must be between 1 and 8"),
                         ({"gpus": 1.5}, "params.gpus must be a whole number"),
                         ({"precision": "fp8"}, "params.precision must be one of auto, fp32, fp16, bf16"),
                         ({"precision": None}, "params.precision must be one of")]:
        with pytest.raises(BadRequest, match=message):
            template.resolve_params(bad)
