"""``sightline templates``, ``sightline models ...`` and ``sightline versions ...``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from sightline_cli import output
from sightline_cli.state import JsonOption, YesOption, answer, confirm, state, wants_json
from sightline_client import SightlineClient
from sightline_client.models import ModelVersion

app = typer.Typer(no_args_is_help=True, help="models: train, list, show, download, delete")
versions_app = typer.Typer(no_args_is_help=True, help="a model's versions: list, show, train, promote, cancel, delete")

ModelId = Annotated[str, typer.Argument(help="the model's id (mdl-...)")]
VersionNumber = Annotated[int, typer.Argument(help="the version number", min=1)]
TASKS = ("classification", "detection", "multilabel")
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="a hyperparameter, name=value (repeat); "
                                                  "values are read as JSON: epochs=1, pretrained=false, "
                                                  "weights_uri=s3://...")]
Datasets = Annotated[list[str] | None, typer.Option("--dataset", "-d", help="a dataset to train on (repeat)")]
Template = Annotated[str | None, typer.Option(help="a template id (`sightline templates`); the task's default "
                                                   "when left out")]
Wait = Annotated[bool, typer.Option("--wait", help="follow training with a progress bar until the version is ready")]
WaitTimeout = Annotated[float, typer.Option("--timeout", help="seconds to wait with --wait", min=1)]


def parse_params(pairs: list[str] | None) -> dict[str, Any] | None:
    """``["epochs=1", "pretrained=false"]`` as ``{"epochs": 1, "pretrained": False}``; strings stay strings."""
    if not pairs:
        return None
    params: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            raise typer.BadParameter(f"{pair!r} is not name=value", param_hint="--param")
        if name in params:
            raise typer.BadParameter(f"{name} is given twice", param_hint="--param")
        try:
            params[name] = json.loads(text)
        except ValueError:
            params[name] = text
    return params


# ---------------------------------------------------------------- templates


def templates(
    ctx: typer.Context,
    template_id: Annotated[str | None, typer.Argument(help="one template: its parameters in full")] = None,
    task: Annotated[str | None, typer.Option(help="only templates of this task")] = None,
    json_output: JsonOption = False,
) -> None:
    """The training templates and their parameters."""
    found = state(ctx).client().list_templates()
    if task:
        found = [t for t in found if t.get("task") == task]
    if template_id:
        found = [t for t in found if t.get("id") == template_id]
        if not found:
            raise typer.BadParameter(f"no template {template_id!r}; `sightline templates` lists them",
                                     param_hint="TEMPLATE_ID")
    if wants_json(ctx, json_output):
        output.print_json(found[0] if template_id else {"templates": found})
        return
    if template_id:
        template = found[0]
        output.fields([("template", template.get("id")), ("task", template.get("task")),
                       ("description", template.get("description")),
                       ("weights", (template.get("weights") or {}).get("name"))])
        output.table("parameters", ["name", "type", "default", "range", "description"],
                     ([name, spec.get("type"), json.dumps(spec.get("default")), _range(spec), spec.get("description")]
                      for name, spec in (template.get("params") or {}).items()))
        return
    output.table(None, ["template", "task", "default", "description", "parameters"],
                 ([t.get("id"), t.get("task"), t.get("default_for_task"), t.get("description"),
                   ", ".join(f"{name}={json.dumps(spec.get('default'))}" for name, spec in (t.get("params") or {}).items())]
                  for t in found))


def _range(spec: dict[str, Any]) -> str:
    if "choices" in spec:
        return " | ".join(str(choice) for choice in spec["choices"])
    if "minimum" in spec or "maximum" in spec:
        return f"{spec.get('minimum', '')}..{spec.get('maximum', '')}"
    return spec.get("pattern", "")


# ---------------------------------------------------------------- models


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the model's name (1 to 128 characters)")],
    task: Annotated[str, typer.Option(help="classification, detection or multilabel")],
    dataset: Datasets = None,
    template: Template = None,
    param: Params = None,
    retrain_on_new_data: Annotated[bool, typer.Option(help="train a new version when the datasets change")] = False,
    wait: Wait = False,
    timeout: WaitTimeout = 3600.0,
    json_output: JsonOption = False,
) -> None:
    """Create a model and train its first version."""
    if task not in TASKS:
        raise typer.BadParameter(f"{task!r} is not one of {', '.join(TASKS)}", param_hint="--task")
    if not dataset:
        raise typer.BadParameter("name at least one dataset", param_hint="--dataset")
    client = state(ctx).client()
    created = client.create_model(name, task, dataset, template=template, params=parse_params(param),
                                  retrain_on_new_data=retrain_on_new_data or None)
    _started(ctx, client, created, wait, timeout, json_output)


def _started(ctx: typer.Context, client: SightlineClient, created: dict[str, Any], wait: bool, timeout: float,
             json_output: bool) -> None:
    model_id, number = created["model_id"], created["version"]
    if not wait:
        if wants_json(ctx, json_output):
            output.print_json(created)
        else:
            print(f"Training {model_id} version {number} ({created.get('status')}); follow it with "
                  f"`sightline versions show {model_id} {number}`.")
        return
    output.note(f"training {model_id} version {number}")
    version = follow(client, model_id, number, timeout)
    if wants_json(ctx, json_output):
        output.print_json(version)
    else:
        _show_version(version)


def follow(client: SightlineClient, model_id: str, number: int, timeout: float) -> ModelVersion:
    """Wait for the version with a bar per epoch: loss, the primary metric, ETA (on stderr)."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[details]}"), console=output.console(stderr=True)) as bar:
        task = bar.add_task("waiting for the first epoch", total=None, details="")

        def progressed(version: ModelVersion) -> None:
            progress = version.get("progress") or {}
            if version.get("status") != "training":
                return
            if not progress.get("epochs"):
                bar.update(task, description=f"{version.get('status')}: waiting for the first epoch")
                return
            metric = progress.get("metric") or {}
            details = [f"loss {output.cell(progress.get('train_loss'))}"]
            if metric.get("name"):
                details.append(f"{metric['name']} {output.cell(metric.get('value'))}")
            details.append(f"ETA {output.seconds(progress.get('eta_seconds'))}")
            bar.update(task, description="epoch", total=progress["epochs"], completed=progress.get("epoch", 0),
                       details="  ".join(details))

        version = client.wait_for_version(model_id, number, timeout, interval=2.0, on_progress=progressed)
        bar.update(task, description="trained", completed=bar.tasks[0].total or 1, total=bar.tasks[0].total or 1)
    return version


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """The models, newest first."""
    found = state(ctx).client().list_models()
    if wants_json(ctx, json_output):
        output.print_json({"models": found})
        return
    output.table(None, ["model", "name", "task", "status", "serving", "latest", "classes", "datasets", "created"],
                 ([m.get("model_id"), m.get("name"), m.get("task"), m.get("status"), m.get("serving_version"),
                   m.get("latest_version"), len(m.get("classes") or []), m.get("datasets"), m.get("created_at")]
                  for m in found))


@app.command()
def show(ctx: typer.Context, model_id: ModelId, json_output: JsonOption = False) -> None:
    """One model and its versions."""
    client = state(ctx).client()
    model = client.get_model(model_id)
    if wants_json(ctx, json_output):
        output.print_json(model)
        return
    output.fields([("model", model.get("model_id")), ("name", model.get("name")), ("task", model.get("task")),
                   ("status", model.get("status")), ("serving version", model.get("serving_version")),
                   ("latest version", model.get("latest_version")), ("classes", model.get("classes")),
                   ("datasets", model.get("datasets")), ("template", model.get("template")),
                   ("params", model.get("params")), ("retraining", model.get("retraining")),
                   ("promotion", model.get("promotion")), ("failure", model.get("failure_reason"))])
    _versions_table(client.list_versions(model_id)["versions"])


@app.command()
def delete(ctx: typer.Context, model_id: ModelId, yes: YesOption = False, json_output: JsonOption = False) -> None:
    """Delete the model with all its versions and artifacts (a training run is cancelled; datasets stay)."""
    confirm(f"Delete model {model_id} with all its versions and artifacts?", yes)
    answer(ctx, json_output, state(ctx).client().delete_model(model_id), f"Deleted {model_id}.")


@app.command()
def download(
    ctx: typer.Context,
    model_id: ModelId,
    directory: Annotated[Path, typer.Argument(help="where to put the files (created if needed)", file_okay=False)],
    version: Annotated[int | None, typer.Option(help="this version instead of the serving one", min=1)] = None,
    checkpoint: Annotated[bool, typer.Option("--checkpoint", help="also the training checkpoint (large)")] = False,
    json_output: JsonOption = False,
) -> None:
    """Download a version's ONNX model, labels.json, metrics, card and plots."""
    written: list[dict[str, Any]] = []
    paths = state(ctx).client().download_model(model_id, directory, version=version, include_checkpoint=checkpoint,
                                               on_file=lambda name, size: written.append({"name": name, "size": size}))
    if wants_json(ctx, json_output):
        output.print_json({"model_id": model_id, "directory": str(directory),
                           "files": [{**entry, "path": str(path)} for entry, path in zip(written, paths)]})
        return
    output.table(f"{model_id} -> {directory}", ["file", "bytes"], ([e["name"], e["size"]] for e in written))


# ---------------------------------------------------------------- versions


def _versions_table(found: list[ModelVersion]) -> None:
    output.table("versions", ["version", "status", "promoted", "template", "datasets", "primary metric", "trigger",
                              "created", "failure"],
                 ([v.get("version"), v.get("status"), v.get("promoted"), v.get("template"), v.get("datasets"),
                   _primary(v), (v.get("trigger") or {}).get("type"), v.get("created_at"), v.get("failure_reason")]
                  for v in found))


def _primary(version: ModelVersion) -> str:
    metrics = version.get("metrics") or {}
    name = metrics.get("primary_metric")
    return f"{name} {output.cell(metrics.get(name))}" if name else "-"


def _show_version(version: ModelVersion) -> None:
    progress = version.get("progress") or {}
    metrics = version.get("metrics") or {}
    output.fields([("model", version.get("model_id")), ("version", version.get("version")),
                   ("status", version.get("status")), ("promoted", version.get("promoted")),
                   ("template", version.get("template")), ("params", version.get("params")),
                   ("datasets", version.get("datasets")), ("classes", version.get("classes")),
                   ("primary metric", _primary(version)),
                   ("progress", f"epoch {progress.get('epoch')}/{progress.get('epochs')}, ETA "
                                f"{output.seconds(progress.get('eta_seconds'))}" if progress else None),
                   ("failure", version.get("failure_reason")), ("created", version.get("created_at")),
                   ("finished", version.get("finished_at"))])
    headline = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if headline:
        output.table("metrics", ["metric", "value"], sorted(headline.items()))


@versions_app.command("list")
def versions_list(ctx: typer.Context, model_id: ModelId, json_output: JsonOption = False) -> None:
    """The model's versions, newest first."""
    found = list(state(ctx).client().iter_versions(model_id))
    if wants_json(ctx, json_output):
        output.print_json({"versions": found})
        return
    _versions_table(found)


@versions_app.command("show")
def versions_show(ctx: typer.Context, model_id: ModelId, version: VersionNumber, json_output: JsonOption = False) -> None:
    """One version: status, progress, metrics."""
    found = state(ctx).client().get_version(model_id, version)
    if wants_json(ctx, json_output):
        output.print_json(found)
        return
    _show_version(found)


@versions_app.command("create")
def versions_create(
    ctx: typer.Context,
    model_id: ModelId,
    dataset: Datasets = None,
    template: Template = None,
    param: Params = None,
    wait: Wait = False,
    timeout: WaitTimeout = 3600.0,
    json_output: JsonOption = False,
) -> None:
    """Train a new version (the model's datasets, template and params unless given)."""
    client = state(ctx).client()
    created = client.create_version(model_id, datasets=dataset or None, template=template, params=parse_params(param))
    _started(ctx, client, created, wait, timeout, json_output)


@versions_app.command("promote")
def versions_promote(ctx: typer.Context, model_id: ModelId, version: VersionNumber, json_output: JsonOption = False) -> None:
    """Serve this trained version (a rollback when it is an older one)."""
    promoted = state(ctx).client().promote_version(model_id, version)
    answer(ctx, json_output, promoted, f"{model_id} serves version {promoted.get('serving_version')}.")


@versions_app.command("cancel")
def versions_cancel(ctx: typer.Context, model_id: ModelId, version: VersionNumber, json_output: JsonOption = False) -> None:
    """Stop a training version; the serving version keeps answering."""
    cancelled = state(ctx).client().cancel_version(model_id, version)
    answer(ctx, json_output, cancelled, f"{model_id} version {version}: {cancelled.get('status')}.")


@versions_app.command("delete")
def versions_delete(ctx: typer.Context, model_id: ModelId, version: VersionNumber, yes: YesOption = False,
                    json_output: JsonOption = False) -> None:
    """Delete a version and its artifacts (never the serving one)."""
    confirm(f"Delete {model_id} version {version} and its artifacts?", yes)
    answer(ctx, json_output, state(ctx).client().delete_version(model_id, version),
           f"Deleted {model_id} version {version}.")
