"""Every template of the catalogue builds, exports to ONNX and passes the job's ONNX Runtime parity check, from
random initialisation at a small image size; its published weights fit the model as torchvision lays it out.

The export and check of all 14 templates take about 2 minutes on 2 CPU cores (the two ResNet-50 detectors
about 25 s each); nothing here reads published weights or the network (conftest: an empty TORCH_HOME).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import get_model, get_model_weights, get_weight
from torchvision.ops.misc import FrozenBatchNorm2d

from sightline import imaging
from sightline.contract import CLASSIFICATION, DETECTION, MULTILABEL
from sightline.templates import TEMPLATES
from sightline_training import data, export, models, weights

SIZE = 64  # pixels: small enough to trace quickly, big enough for every backbone's strides and FPN levels
CLASSES = ["a", "b", "c"]


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48 + 8 * n, 80 - 8 * n, 3), dtype=np.uint8)) for n in range(count)]


def test_the_catalogue_has_every_template_of_the_issue():
    classifiers = {"mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet50", "convnext_tiny"}
    detectors = {"ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn_v2",
                 "fcos_resnet50_fpn"}
    assert {t.id for t in TEMPLATES.values() if t.task == CLASSIFICATION} == classifiers
    assert {t.id for t in TEMPLATES.values() if t.task == MULTILABEL} == {f"{c}_multilabel" for c in classifiers}
    assert {t.id for t in TEMPLATES.values() if t.task == DETECTION} == detectors
    for template in TEMPLATES.values():
        assert template.architecture in models.ARCHITECTURES
        # The published weights are the architecture's own, ImageNet for classifiers and COCO for detectors.
        published = get_weight(template.weights.name)
        assert published in list(get_model_weights(template.architecture))
        assert len(published.meta["categories"]) == (91 if template.task == DETECTION else 1000)


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_every_template_exports_and_passes_the_onnx_check(template_id, tmp_path):
    template = TEMPLATES[template_id]
    torch.manual_seed(0)
    model = models.build_model(template, len(CLASSES), SIZE).eval()
    labels = export.labels_document(template, CLASSES, models.input_spec(template, SIZE))
    spec = imaging.InputSpec.from_labels(labels)
    path = tmp_path / "model.onnx"
    images = random_images(3)
    if template.task in models.CLASSIFIER_TASKS:
        export.export_onnx(model, template, SIZE, path)
        transform = data.classification_transforms(SIZE, train=False)
        check = export.verify_classifier(export.open_session(path), model, [transform(i) for i in images],
                                         [imaging.to_tensor(i, spec) for i in images])
    else:
        # Random heads score below the detectors' own thresholds (RetinaNet and FCOS start from a 1% prior), so
        # the check would compare empty lists: a lower threshold makes them answer, and the check mean something.
        owner = getattr(model, "roi_heads", model)
        owner.score_thresh = 0.01
        export.export_onnx(model, template, SIZE, path)
        images.append(Image.new("RGB", (SIZE, SIZE), (128, 128, 128)))
        transform = data.detection_transforms(SIZE, train=False)
        torch_inputs = [transform(i) for i in images]
        check = export.verify_detector(export.open_session(path), model, torch_inputs,
                                       [imaging.to_tensor(i, spec) for i in images])
        with torch.inference_mode():
            found = [len(model([t])[0]["boxes"]) for t in torch_inputs]
        assert max(found) > 0, found
    assert check.passed, check.reason
    assert check.images == len(images)


@pytest.mark.parametrize("architecture", sorted(models.ARCHITECTURES))
def test_the_head_is_exactly_what_depends_on_the_classes(architecture):
    template = next(t for t in TEMPLATES.values() if t.architecture == architecture)
    layout = models.ARCHITECTURES[architecture]
    three = models.build_model(template, 3, SIZE).state_dict()
    five = models.build_model(template, 5, SIZE).state_dict()
    assert {key for key in three if three[key].shape != five[key].shape} == {key for key in three
                                                                            if layout.is_head(key)}
    parameters = [name for name, _ in models.build_model(template, 3, SIZE).named_parameters()]
    backbone = [name for name in parameters if layout.is_backbone(name)]
    assert backbone and not any(layout.is_head(name) for name in backbone)
    assert len(backbone) < len(parameters)


@pytest.mark.parametrize("architecture", sorted(models.ARCHITECTURES))
def test_the_pretrained_layout_is_torchvisions_own(architecture, tmp_path, monkeypatch):
    # torchvision's builder, given the weight enum, loads the file at $TORCH_HOME/hub/checkpoints/<its name>
    # strictly: a state dict of our pretrained layout saved there must load and compute the same.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    template = next(t for t in TEMPLATES.values() if t.architecture == architecture)
    published = get_weight(template.weights.name)
    outputs = len(published.meta["categories"]) - (1 if template.task == DETECTION else 0)
    torch.manual_seed(0)
    ours = models.build_model(template, outputs, SIZE, pretrained=True).eval()
    with torch.no_grad():
        for module in ours.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)):
                module.running_var.uniform_(0.5, 2.0)  # statistics unlike the default, and eps matters
    path = weights.cache_dir() / Path(urlparse(published.url).path).name
    path.parent.mkdir(parents=True)
    torch.save(ours.state_dict(), path)

    theirs = get_model(architecture, weights=published).eval()
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        if template.task == DETECTION:
            ours_features, their_features = ours.backbone(image), theirs.backbone(image)
            assert ours_features.keys() == their_features.keys()
            assert all(torch.equal(ours_features[key], their_features[key]) for key in ours_features)
        else:
            assert torch.equal(ours(image), theirs(image))
    assert ({type(m) for m in ours.modules()} >= {FrozenBatchNorm2d}) == models.ARCHITECTURES[architecture].frozen_norm


@pytest.mark.parametrize("template_id", ["mobilenet_v3_small", "fasterrcnn_mobilenet_v3_large_fpn"])
def test_freezing_the_backbone_leaves_it_untouched_while_the_rest_trains(template_id):
    template = TEMPLATES[template_id]
    torch.manual_seed(0)
    model = models.build_model(template, 2, SIZE)
    layout = models.architecture(template)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    assert models.freeze_backbone(model, template, frozen=True) > 0
    model.train()
    if template.task == DETECTION:
        images = [torch.rand(3, SIZE, SIZE), torch.rand(3, SIZE, SIZE)]
        targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]), "labels": torch.tensor([1])},
                   {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # background only
        loss = sum(model(images, targets).values())
    else:
        loss = torch.nn.functional.cross_entropy(model(torch.rand(2, 3, SIZE, SIZE)), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in after if layout.is_backbone(name))
    assert any(not torch.equal(before[name], after[name]) for name in after if layout.is_head(name))

    models.freeze_backbone(model, template, frozen=False)
    assert all(p.requires_grad for p in model.parameters())


def test_the_weight_params_are_typed_defaulted_and_described():
    described = TEMPLATES["resnet50_multilabel"].describe()
    assert described["architecture"] == "resnet50"
    assert described["weights"] == {"name": "ResNet50_Weights.IMAGENET1K_V2", "dataset": "ImageNet-1k"}
    params = described["params"]
    assert params["pretrained"]["type"] == "boolean" and params["pretrained"]["default"] is True
    assert params["weights_uri"]["type"] == "string" and params["weights_uri"]["default"] is None
    assert params["weights_uri"]["pattern"].startswith("^s3://")
    assert (params["freeze_backbone_epochs"]["default"], params["freeze_backbone_epochs"]["minimum"]) == (0, 0)
    assert all(spec["description"] for spec in params.values())
    template = TEMPLATES["fcos_resnet50_fpn"]
    assert template.resolve_params({"weights_uri": None})["weights_uri"] is None
    uri = "s3://my-bucket/weights/fcos.pth"
    assert template.resolve_params({"weights_uri": uri, "pretrained": False})["weights_uri"] == uri
