"""``sightline``: the Sightline API from the command line.

Errors print one line, ``sightline: <code>: <message>``, and exit with status 1 (2 for a wrong command line).
``sightline local ...`` and ``sightline deploy ...`` are the local stack's and deployment's own commands
(``sightline_local.cli``), passed on unchanged.
"""
from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sightline_cli import datasets, evaluations, keys, models, output, predictions
from sightline_cli.state import JsonOption, State, state, wants_json
from sightline_client import Forbidden, SightlineClient, SightlineError
from sightline_client import config as configuration


class _Commands(TyperGroup):
    """The root group: a client error becomes one line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SightlineError as error:
            message = f"sightline: {error.code}: {' '.join(error.message.split())}"
            if error.reference and error.reference not in error.message:
                message += f" (reference {error.reference})"
            print(message, file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("sightline: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None


app = typer.Typer(cls=_Commands, name="sightline", no_args_is_help=True, add_completion=False,
                  help="Sightline: self-hosted custom vision. Datasets, training, predictions and keys through the "
                       "API; `sightline local` runs the whole service on this machine.")
app.add_typer(datasets.app, name="datasets")
app.add_typer(models.app, name="models")
app.add_typer(models.versions_app, name="versions")
app.add_typer(keys.app, name="keys")
app.command("templates")(models.templates)
app.command("predict")(predictions.predict)
app.command("evaluate")(evaluations.evaluate)
app.command("compare")(evaluations.compare)


@app.callback()
def _options(
    ctx: typer.Context,
    api_url: Annotated[str | None, typer.Option(help="the API's base URL (default: $SIGHTLINE_API_URL, the "
                                                     "configured one, else a local stack's)")] = None,
    api_key: Annotated[str | None, typer.Option(help="the API key (default: $SIGHTLINE_API_KEY, the configured "
                                                     "one, else a local stack's .sightline/api-key)")] = None,
    json_output: JsonOption = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each answer", min=1)] = 60.0,
) -> None:
    ctx.obj = State(api_url=api_url, api_key=api_key, json=json_output, timeout=timeout)


@app.command()
def configure(
    ctx: typer.Context,
    api_url: Annotated[str | None, typer.Option("--api-url", help="the API's base URL (asked when left out)")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="the API key (asked when left out)")] = None,
    verify: Annotated[bool, typer.Option(help="check the URL and the key against the API first")] = True,
    json_output: JsonOption = False,
) -> None:
    """Save the API URL and key for later commands (~/.config/sightline/config.json, readable by you only)."""
    shared = state(ctx)
    api_url = api_url or shared.api_url or typer.prompt("API URL", default=configuration.DEFAULT_API_URL)
    api_key = api_key or shared.api_key or typer.prompt("API key", hide_input=True)
    url = configuration.normalise_url(api_url)
    if verify:
        client = SightlineClient(url, api_key, timeout=shared.timeout)
        client.health()
        try:
            client.list_templates()
        except Forbidden as refused:
            if refused.code != "scope_forbidden":  # a key the API does not know; a predict-only key is fine
                raise
    path = configuration.write_config_file(url, api_key)
    if wants_json(ctx, json_output):
        output.print_json({"path": str(path), "api_url": url})
    else:
        print(f"Saved {url} and its key to {path} (mode 0600).")


_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _forward(command: str, ctx: typer.Context) -> None:
    from sightline_local.cli import main as local_main

    raise typer.Exit(local_main([command, *ctx.args]) or 0)


@app.command("local", context_settings=_FORWARD, add_help_option=False,
             help="the embedded local stack (`sightline local up`, ...): see `sightline local --help`")
def local(ctx: typer.Context) -> None:
    _forward("local", ctx)


@app.command("deploy", context_settings=_FORWARD, add_help_option=False,
             help="deploy to AWS: see `sightline deploy --help`")
def deploy(ctx: typer.Context) -> None:
    _forward("deploy", ctx)


def main(argv: list[str] | None = None) -> int:
    """The console script: the exit status of the command."""
    try:
        result = app(args=sys.argv[1:] if argv is None else argv, prog_name="sightline", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        print("sightline: aborted", file=sys.stderr)
        return 1
    except typer.TyperException as error:  # a wrong command line: usage and the reason, exit status 2
        error.show()  # type: ignore[attr-defined]
        return int(getattr(error, "exit_code", 2))
    except KeyboardInterrupt:
        print("sightline: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug: one line, the traceback only when asked for
        if os.environ.get("SIGHTLINE_DEBUG"):
            raise
        print(f"sightline: internal_error: {type(error).__name__}: {error} (SIGHTLINE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0

