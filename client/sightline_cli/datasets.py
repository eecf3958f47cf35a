"""``sightline datasets ...``: upload, list, show, images, issues, versions, delete."""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from sightline_cli import output
from sightline_cli.state import JsonOption, YesOption, answer, confirm, state, wants_json
from sightline_client.models import Dataset, RegistrationProgress, UploadProgress
from sightline_client.uploads import collect

app = typer.Typer(no_args_is_help=True, help="datasets: upload files, browse what registered")

Name = Annotated[str, typer.Argument(help="the dataset's name (1 to 64 letters, digits, '-', '_' or '.')")]
Limit = Annotated[int | None, typer.Option(help="show at most this many", min=1)]
ISSUES_SHOWN = 20


@app.command()
def upload(
    ctx: typer.Context,
    name: Name,
    path: Annotated[Path, typer.Argument(help="a folder (uploaded with its layout) or one file: an archive (.zip, "
                                              ".tar, .tar.gz), an annotation file (COCO .json, .csv, .manifest, "
                                              "...) or an image")],
    wait: Annotated[bool, typer.Option(help="wait until the upload has registered, then show the dataset")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for registration", min=1)] = 600.0,
    workers: Annotated[int, typer.Option(help="files uploaded at once", min=1, max=32)] = 4,
    json_output: JsonOption = False,
) -> None:
    """Upload files into a dataset through presigned URLs (the API key is enough), then wait for registration."""
    client = state(ctx).client()
    collect(path)  # a path with nothing to upload is refused before the bar shows
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TextColumn("{task.fields[files]}"), TimeRemainingColumn(),
                  console=output.console(stderr=True), transient=False) as bar:
        task = bar.add_task(f"uploading to {name}", total=None, files="")

        def advanced(progress: UploadProgress) -> None:
            bar.update(task, total=progress.bytes_total, completed=progress.bytes_done,
                       files=f"{progress.files_done}/{progress.files_total} files")

        def polled(progress: RegistrationProgress) -> None:
            summary = "summarizing" if progress.files_read == progress.files_total else "registering"
            bar.update(task, description=f"{summary} {name}: {progress.files_read}/{progress.files_total} files read"
                                         f"{f', {progress.invalid} invalid' if progress.invalid else ''}")

        result = client.upload_dataset(name, path, wait=wait, timeout=timeout, on_progress=advanced,
                                       on_poll=polled, workers=workers)
    dataset = result.dataset_state
    for skipped, why in result.skipped:
        output.note(f"left out {skipped}: {why}")
    for file in result.file_states:
        if file["state"] == "superseded":
            output.note(f"{file['path']}: replaced by another upload of the same path before it was registered")
        elif file["state"] == "invalid":
            output.note(f"{file['path']}: not usable ({file.get('issue_count', 0)} issues: "
                        f"`sightline datasets issues {name}`)")
    if dataset is None:
        if wants_json(ctx, json_output):
            output.print_json({"dataset": name, "files": result.files, "bytes": result.bytes,
                               "skipped": [{"path": p, "reason": r} for p, r in result.skipped]})
        else:
            print(f"Uploaded {len(result.files)} files ({result.bytes} bytes) to {name}; they register in a moment "
                  f"(`sightline datasets show {name}`).")
        return
    if wants_json(ctx, json_output):
        output.print_json(dataset)
        return
    _show(dataset)


@app.command("list")
def list_(ctx: typer.Context, limit: Limit = None, json_output: JsonOption = False) -> None:
    """The datasets, by name."""
    found = list(islice(state(ctx).client().iter_datasets(), limit))
    if wants_json(ctx, json_output):
        output.print_json({"datasets": found})
        return
    output.table(None, ["name", "status", "images", "classes", "tasks", "formats", "issues", "updated"],
                 ([d.get("name"), d.get("status"), d.get("images"), d.get("class_count"), d.get("tasks"),
                   d.get("formats"), d.get("issue_count"), d.get("updated_at")] for d in found))


@app.command()
def show(ctx: typer.Context, name: Name, json_output: JsonOption = False) -> None:
    """One dataset: status, classes, what is too small, duplicates and the first issues."""
    dataset = state(ctx).client().get_dataset(name)
    if wants_json(ctx, json_output):
        output.print_json(dataset)
        return
    _show(dataset)


def _show(dataset: Dataset) -> None:
    output.fields([
        ("dataset", dataset.get("name")), ("status", dataset.get("status")), ("tasks", dataset.get("tasks")),
        ("formats", dataset.get("formats")), ("images", dataset.get("images")),
        ("annotations", dataset.get("annotations")), ("negatives", dataset.get("negatives")),
        ("duplicates", (dataset.get("duplicates") or {}).get("count", 0)), ("issues", dataset.get("issue_count")),
        ("updated", dataset.get("updated_at")),
    ])
    counts = dataset.get("class_counts") or {}
    if counts:
        output.table("classes", ["class", "images", "boxes"],
                     ([label, value.get("images"), value.get("boxes")] for label, value in sorted(counts.items())))
    for task, small in (dataset.get("too_small") or {}).items():
        output.note(f"too small for {task}: {'; '.join(small.get('reasons', []))}")
    issues = dataset.get("issues") or []
    if issues:
        output.table(f"issues (first {min(len(issues), ISSUES_SHOWN)} of {dataset.get('issue_count', len(issues))})",
                     ["file", "reason"], ([i.get("key"), i.get("reason")] for i in issues[:ISSUES_SHOWN]))


@app.command()
def images(
    ctx: typer.Context,
    name: Name,
    label: Annotated[str | None, typer.Option("--class", help="only images that show this class")] = None,
    limit: Limit = 100,
    json_output: JsonOption = False,
) -> None:
    """The registered images with their labels or boxes."""
    found = list(islice(state(ctx).client().iter_dataset_images(name, label=label), limit))
    if wants_json(ctx, json_output):
        output.print_json({"images": found})
        return
    output.table(None, ["sha256", "path", "size", "labels", "boxes"],
                 ([i.get("sha256", "")[:12], i.get("path"), f"{i.get('width')}x{i.get('height')}",
                   i.get("labels", i.get("classes")), i.get("box_count")] for i in found))


@app.command()
def issues(ctx: typer.Context, name: Name, limit: Limit = None, json_output: JsonOption = False) -> None:
    """Every problem registration found, in the order found."""
    found = list(islice(state(ctx).client().iter_dataset_issues(name), limit))
    if wants_json(ctx, json_output):
        output.print_json({"issues": found})
        return
    if not found:
        print(f"{name} has no issues.")
        return
    output.table(None, ["file", "reason"], ([i.get("key"), i.get("reason")] for i in found))


@app.command()
def versions(ctx: typer.Context, name: Name, json_output: JsonOption = False) -> None:
    """The training snapshots that include the dataset, newest first."""
    found = state(ctx).client().list_dataset_versions(name)
    if wants_json(ctx, json_output):
        output.print_json({"versions": found})
        return
    output.table(None, ["snapshot", "task", "images", "classes", "model versions", "created"],
                 ([s.get("snapshot_id", "")[:16], s.get("task"), s.get("images"), len(s.get("classes") or {}),
                   s.get("model_versions"), s.get("created_at")] for s in found))


@app.command()
def delete(ctx: typer.Context, name: Name, yes: YesOption = False, json_output: JsonOption = False) -> None:
    """Delete the dataset, its uploads and the stored images nothing else uses."""
    confirm(f"Delete dataset {name} and its uploads?", yes)
    deleting: Any = state(ctx).client().delete_dataset(name)
    answer(ctx, json_output, deleting, f"Deleting {name} ({deleting.get('status')}).")
