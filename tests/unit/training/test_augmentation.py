"""Training augmentation (data.Augmentation): boxes move with the pixels, and strength 0 only resizes."""
from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw
from torchvision import tv_tensors

from sightline_training import data

SIZE = 64
# Three objects on a 120 x 90 dark image: one inside, one at a corner (often cropped away), one along an edge.
OBJECTS = [(30, 20, 62, 44), (0, 0, 14, 12), (96, 50, 120, 90)]


def scene() -> tuple[Image.Image, dict]:
    image = Image.new("RGB", (120, 90), (20, 20, 20))
    draw = ImageDraw.Draw(image)
    masks = torch.zeros(len(OBJECTS), 90, 120, dtype=torch.uint8)
    for number, (x_min, y_min, x_max, y_max) in enumerate(OBJECTS):
        draw.rectangle((x_min, y_min, x_max - 1, y_max - 1), fill=(240, 240, 240))
        masks[number, y_min:y_max, x_min:x_max] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(OBJECTS, dtype=torch.float32), format="XYXY",
                                          canvas_size=(90, 120)),
        "labels": torch.tensor([1, 2, 3]),
        # Each object's pixels as a mask: it goes through every geometric step as the image does.
        "masks": tv_tensors.Mask(masks),
    }
    return image, target


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    rows, columns = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("augmentation", [data.Augmentation(1.0, any_orientation=True), data.Augmentation(0.5)])
def test_boxes_stay_on_their_objects_through_every_augmentation(augmentation):
    transform = data.detection_transforms(SIZE, train=True, augmentation=augmentation)
    zoomed = flipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        image, target = transform(*scene())
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        boxes, masks, labels = target["boxes"], target["masks"], target["labels"]
        assert len(boxes) == len(masks) == len(labels) >= 1  # a box cropped away takes its label and mask with it
        for box, mask, label in zip(boxes, masks, labels):
            if mask.sum() < 4:  # an object cut to a sliver at the edge: its box is a pixel or two
                continue
            # The box is where the object's pixels went: within a pixel (masks resize by nearest neighbour).
            assert torch.allclose(box, mask_box(mask), atol=1.5), (seed, label, box, mask_box(mask))
            inside = image[:, mask.bool()].mean()
            outside = image[:, ~masks.any(dim=0).bool()].mean()
            assert inside > outside + 0.2, (seed, label)  # and the pixels there are the bright object
        first = boxes[labels == 1]
        if len(first):
            side = first[0, 2] - first[0, 0]
            zoomed += not 15 <= side <= 19  # 32 of 120 pixels is 17 of 64 without a zoom (or a turn)
            flipped += bool(first[0, 0] + first[0, 2] > SIZE)  # its centre (46 of 120) moved right of the middle
    assert zoomed > 5 and flipped > 5  # the augmentation did something


def test_strength_zero_only_resizes_and_scales_the_boxes():
    transform = data.detection_transforms(SIZE, train=True, augmentation=data.Augmentation(0.0))
    image, target = transform(*scene())
    expected = torch.tensor(OBJECTS, dtype=torch.float32) * torch.tensor([SIZE / 120, SIZE / 90] * 2)
    assert torch.allclose(target["boxes"], expected, atol=1e-4)
    validation = data.detection_transforms(SIZE, train=False)(*scene())[0]
    assert (image - validation).abs().mean() < 0.02  # tensor vs Pillow resizing: the same picture


def test_classifier_augmentation_keeps_the_input_shape_and_strength_zero_is_deterministic():
    image = scene()[0]
    strong = data.classification_transforms(SIZE, True, data.Augmentation(1.0, any_orientation=True))
    plain = data.classification_transforms(SIZE, True, data.Augmentation(0.0))
    torch.manual_seed(0)
    first = strong(image)
    assert first.shape == (3, SIZE, SIZE) and not torch.equal(first, strong(image))
    assert torch.equal(plain(image), plain(image))


def test_zoom_range_must_include_one():
    with pytest.raises(ValueError):
        data.RandomZoom(1.2, 2.0)
