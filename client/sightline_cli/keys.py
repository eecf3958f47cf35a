"""``sightline keys create|list|revoke``: scoped API keys (the caller's key needs the admin scope)."""
from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from sightline_cli import output
from sightline_cli.state import JsonOption, answer, state, wants_json

app = typer.Typer(no_args_is_help=True, help="scoped API keys (needs an admin key: the stack's own, or an admin "
                                             "scoped key)")


@app.callback()
def _where(
    ctx: typer.Context,
    api_url: Annotated[str | None, typer.Option(help="the API's base URL: the stack's ApiUrl output on AWS")] = None,
    api_key: Annotated[str | None, typer.Option(help="an admin key: the stack's own (ApiKeyId output on AWS)")] = None,
) -> None:
    """``sightline keys --api-url ... --api-key ... create ...`` as well as ``sightline --api-url ... keys ...``."""
    shared = state(ctx)
    shared.api_url = api_url or shared.api_url
    shared.api_key = api_key or shared.api_key


class Scope(str, Enum):  # sightline.access.SCOPES: the API checks them
    predict = "predict"
    read = "read"
    train = "train"
    admin = "admin"


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="what the key is for (1 to 64 characters)")],
    scope: Annotated[list[Scope], typer.Option(help="a scope the key gets (repeat for several)")],
    json_output: JsonOption = False,
) -> None:
    """Create a key; it is shown this once."""
    created = state(ctx).client().create_key(name, [s.value for s in scope])
    if wants_json(ctx, json_output):
        output.print_json(created)
    else:
        output.fields([("key", created.get("key")), ("id", created.get("key_id")), ("name", created.get("name")),
                       ("scopes", created.get("scopes"))])
    output.note("The key is shown this once: store it now.")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Every key: id, last 4 characters, scopes, created, revoked."""
    found = state(ctx).client().list_keys()
    if wants_json(ctx, json_output):
        output.print_json({"keys": found})
        return
    output.table(None, ["id", "key", "name", "scopes", "created", "state"],
                 ([k.get("key_id"), f"...{k.get('last4')}", k.get("name"), k.get("scopes"), k.get("created_at"),
                   f"revoked {k['revoked_at']}" if k.get("revoked_at") else "active"] for k in found))


@app.command()
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="the key's id")],
           json_output: JsonOption = False) -> None:
    """Revoke a key (API Gateway's authorizer cache may honour it for up to AuthorizerCacheSeconds more)."""
    revoked = state(ctx).client().revoke_key(key_id)
    answer(ctx, json_output, revoked, f"Revoked {revoked.get('key_id')} ({revoked.get('name')}) at "
                                      f"{revoked.get('revoked_at')}.")
