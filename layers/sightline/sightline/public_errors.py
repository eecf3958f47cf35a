"""What a caller learns of a failure on the service's side: a code and a reference, never the AWS text.

AWS error messages name ARNs, account ids and resource names; the function's log keeps them under the request
id, which is the reference the caller quotes.
"""
from __future__ import annotations

MESSAGES = {
    "internal_error": "internal error",
}


def referenced(code: str, reference: str) -> dict:
    """``{"error": {"code", "message", "reference"}}`` for a 5xx answer."""
    what = MESSAGES.get(code, "the service could not complete the request")
    return {"error": {"code": code, "message": f"{what}; quote reference {reference} to find it in the log",
                      "reference": reference}}
