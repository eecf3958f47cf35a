"""``sightline predict MODEL IMAGE...``: a table (or the JSON), and ``--draw`` the answer onto a copy."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from sightline_cli import output
from sightline_cli.state import JsonOption, state, wants_json
from sightline_client.models import PredictAnswer

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def predict(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="the model's id")],
    images: Annotated[list[Path], typer.Argument(help="image files (JPEG, PNG, ...) or zips of up to 20 images",
                                                 exists=True, dir_okay=False, readable=True)],
    threshold: Annotated[float | None, typer.Option(help="lowest score to report (0 to 1); by default each "
                                                         "class's own assumed threshold", min=0, max=1)] = None,
    version: Annotated[int | None, typer.Option(help="predict with this version instead of the serving one",
                                                min=1)] = None,
    max_results: Annotated[int | None, typer.Option(help="most predictions per image", min=1, max=100)] = None,
    label: Annotated[list[str] | None, typer.Option("--class", help="only this class (repeat)")] = None,
    draw: Annotated[Path | None, typer.Option(help="write a copy of the image with the boxes (or labels) drawn "
                                                   "on it to this PNG file; one image only", dir_okay=False)] = None,
    json_output: JsonOption = False,
) -> None:
    """Predict images with a model: labels and scores, and boxes for a detector."""
    if draw is not None and len(images) != 1:
        raise typer.BadParameter(f"--draw takes one image, got {len(images)}", param_hint="--draw")
    client = state(ctx).client()
    answers = [client.predict(model_id, image, threshold=threshold, version=version, max_results=max_results,
                              classes=label or None) for image in images]
    if draw is not None:
        draw_predictions(images[0], answers[0], draw)
        output.note(f"drew the predictions on {draw}")
    if wants_json(ctx, json_output):
        output.print_json(answers[0] if len(answers) == 1 else {"results": answers})
        return
    rows: list[list[Any]] = []
    for image, answer in zip(images, answers):
        for name, predictions, error in _per_image(image, answer):
            if error:
                rows.append([name, "error", error.get("code"), error.get("message")])
            for prediction in predictions or [{"label": "(nothing above the threshold)", "score": None}]:
                rows.append([name, prediction.get("label"), prediction.get("score"), _box(prediction.get("box"))])
    first = answers[0]
    output.table(f"{first.get('model_id')} version {first.get('version')} ({first.get('task')})",
                 ["image", "label", "score", "box"], rows)


def _per_image(image: Path, answer: PredictAnswer) -> list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]]:
    if "images" in answer:  # a zip: one entry per member
        return [(f"{image.name}!{entry.get('name')}", entry.get("predictions") or [], entry.get("error"))
                for entry in answer["images"]]
    return [(image.name, list(answer.get("predictions") or []), None)]


def _box(box: dict[str, float] | None) -> str | None:
    if not box:
        return None
    return f"({box['x_min']:.0f}, {box['y_min']:.0f}) - ({box['x_max']:.0f}, {box['y_max']:.0f})"


def draw_predictions(source: Path, answer: PredictAnswer, target: Path) -> None:
    """A copy of ``source`` (upright, as the API read it) with each box and its label and score drawn on it; for
    a classifier, the labels and scores in the corner."""
    if "images" in answer:
        raise typer.BadParameter("--draw takes an image, not a zip", param_hint="--draw")
    try:
        with Image.open(source) as opened:
            picture = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise typer.BadParameter(f"cannot read {source} to draw on: {error}", param_hint="--draw") from None
    canvas = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    width = max(2, round(min(picture.size) / 150))
    lines: list[str] = []
    for index, prediction in enumerate(answer.get("predictions") or []):
        text = f"{prediction.get('label')} {prediction.get('score', 0):.2f}"
        box = prediction.get("box")
        if not box:
            lines.append(text)
            continue
        colour = COLOURS[index % len(COLOURS)]
        corners = (box["x_min"], box["y_min"], box["x_max"], box["y_max"])
        canvas.rectangle(corners, outline=colour, width=width)
        left, top, right, bottom = canvas.textbbox((corners[0], corners[1]), text, font=font)
        lift = bottom - top + 2 * width
        y = corners[1] - lift if corners[1] >= lift else corners[1]
        canvas.rectangle((corners[0], y, corners[0] + right - left + 2 * width, y + lift), fill=colour)
        canvas.text((corners[0] + width, y + width), text, fill="white", font=font)
    if lines:
        text = "\n".join(lines)
        left, top, right, bottom = canvas.multiline_textbbox((4, 4), text, font=font)
        canvas.rectangle((0, 0, right + 4, bottom + 4), fill="black")
        canvas.multiline_text((4, 4), text, fill="white", font=font)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture.save(target, format="PNG")
