"""``sightline keys create|list|revoke``: scoped API keys, through the API (so the same against AWS).

The caller's key needs the admin scope: the stack's own key (``make run`` prints it; ``.sightline/api-key``
locally, the ``ApiKeyId`` output's value on AWS) or an admin scoped key.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sightline_local.client import SightlineClient

SCOPES = ("predict", "read", "train", "admin")  # sightline.access.SCOPES: the API checks them
DEFAULT_API_URL = "http://127.0.0.1:3000"
LOCAL_KEY_FILE = Path(".sightline") / "api-key"


def add_parser(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="scoped API keys (needs an admin key)")
    keys.add_argument("--api-url", default=os.environ.get("SIGHTLINE_API_URL", DEFAULT_API_URL),
                      help="the API's base URL: the stack's ApiUrl output on AWS (default: $SIGHTLINE_API_URL or "
                           f"{DEFAULT_API_URL})")
    keys.add_argument("--api-key", default=None,
                      help=f"an admin key (default: $SIGHTLINE_API_KEY, else {LOCAL_KEY_FILE} of a local stack)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key; it is printed this once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", dest="scopes", action="append", choices=SCOPES, required=True,
                        help="repeat for several scopes")
    actions.add_parser("list", help="every key: id, name, scopes, last 4 characters, created, revoked")
    revoke = actions.add_parser("revoke", help="revoke a key (refused once API Gateway's authorizer cache expires)")
    revoke.add_argument("key_id")


def admin_key(given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("SIGHTLINE_API_KEY"):
        return os.environ["SIGHTLINE_API_KEY"]
    return LOCAL_KEY_FILE.read_text().strip() if LOCAL_KEY_FILE.is_file() else None


def run(args: argparse.Namespace) -> int:
    key = admin_key(args.api_key)
    if not key:
        print("sightline keys: no admin key: pass --api-key or set SIGHTLINE_API_KEY", file=sys.stderr)
        return 2
    client = SightlineClient(args.api_url, key)
    if args.keys_command == "create":
        response = client.post("/v1/keys", {"name": args.name, "scopes": args.scopes})
    elif args.keys_command == "list":
        response = client.get("/v1/keys")
    else:
        response = client.request("DELETE", f"/v1/keys/{args.key_id}")
    if response.status >= 400:
        print(f"sightline keys: HTTP {response.status}: {response.body.decode(errors='replace')}", file=sys.stderr)
        return 1
    answer = response.json()
    if args.keys_command == "list":
        for item in answer["keys"]:
            print(f"{item['key_id']}  ...{item['last4']}  {','.join(item['scopes']):<28} {item['created_at']}  "
                  f"{'revoked ' + item['revoked_at'] if item['revoked_at'] else 'active'}  {item['name']}")
        return 0
    print(json.dumps(answer, indent=2))
    if args.keys_command == "create":
        print("The key is shown this once: store it now.", file=sys.stderr)
    return 0
