"""What every command shares: the global options and the client they make."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from sightline_cli import output
from sightline_client import SightlineClient

JsonOption = Annotated[bool, typer.Option("--json", help="print the API's JSON answer instead of a table")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


@dataclass
class State:
    api_url: str | None = None
    api_key: str | None = None
    json: bool = False
    timeout: float = 60.0
    _client: SightlineClient | None = field(default=None, repr=False)

    def client(self) -> SightlineClient:
        if self._client is None:
            self._client = SightlineClient(self.api_url, self.api_key, timeout=self.timeout)
        return self._client


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def wants_json(ctx: typer.Context, flag: bool) -> bool:
    return flag or state(ctx).json


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` unless ``yes``; a no (or no terminal to ask on) stops the command with exit status 1."""
    if yes:
        return
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def answer(ctx: typer.Context, json_flag: bool, document: Any, text: str) -> None:
    """The API's ``document`` with ``--json``, else one line of ``text`` for people."""
    if wants_json(ctx, json_flag):
        output.print_json(document)
    else:
        print(text)
