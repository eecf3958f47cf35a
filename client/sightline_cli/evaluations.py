"""``sightline evaluate`` and ``sightline compare``."""
from __future__ import annotations

from typing import Annotated

import typer

from sightline_cli import output
from sightline_cli.state import JsonOption, state, wants_json
from sightline_client.models import Evaluation


def evaluate(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="the model's id")],
    dataset: Annotated[str, typer.Argument(help="a ready dataset to evaluate on")],
    version: Annotated[int | None, typer.Option(help="this version instead of the serving one", min=1)] = None,
    include_training_images: Annotated[bool, typer.Option(help="also score the images the version trained on")] = False,
    wait: Annotated[bool, typer.Option(help="wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait", min=1)] = 1800.0,
    json_output: JsonOption = False,
) -> None:
    """Evaluate a trained version on a dataset (the images it trained on left out)."""
    client = state(ctx).client()
    if version is None:
        version = client.get_model(model_id).get("serving_version")
        if version is None:
            raise typer.BadParameter(f"{model_id} serves no version yet: name one", param_hint="--version")
    evaluation = client.create_evaluation(model_id, version, dataset, include_training_images=include_training_images)
    if wait:
        output.note(f"evaluating {model_id} version {version} on {dataset} ({evaluation.get('evaluation_id')})")
        evaluation = client.wait_for_evaluation(evaluation["evaluation_id"], timeout)
    if wants_json(ctx, json_output):
        output.print_json(evaluation)
        return
    _show(evaluation)


def _show(evaluation: Evaluation) -> None:
    mismatch = evaluation.get("class_mismatch") or {}
    output.fields([("evaluation", evaluation.get("evaluation_id")), ("status", evaluation.get("status")),
                   ("model", f"{evaluation.get('model_id')} version {evaluation.get('version')}"),
                   ("dataset", evaluation.get("dataset")), ("images", evaluation.get("images")),
                   ("left out (trained on)", evaluation.get("excluded_training_images")),
                   ("classes only in the dataset", mismatch.get("dataset_only")),
                   ("classes only in the model", mismatch.get("model_only")),
                   ("report", (evaluation.get("report") or {}).get("uri"))])
    metrics = evaluation.get("metrics") or {}
    if metrics:
        output.table("metrics", ["metric", "value"], sorted(metrics.items()))


def compare(
    ctx: typer.Context,
    evaluation_ids: Annotated[list[str], typer.Argument(help="2 to 10 evaluation ids")],
    json_output: JsonOption = False,
) -> None:
    """Evaluations side by side: one column each, the metrics they share as rows."""
    comparison = state(ctx).client().compare_evaluations(evaluation_ids)
    if wants_json(ctx, json_output):
        output.print_json(comparison)
        return
    columns = [f"{e.get('model_id')} v{e.get('version')} on {e.get('dataset')}\n{e.get('evaluation_id')}"
               for e in comparison.get("evaluations", [])]
    output.table(None, ["metric", *columns], ([row.get("metric"), *row.get("values", [])]
                                              for row in comparison.get("rows", [])))
