"""Lambda REQUEST authorizers as API Gateway runs them: the identity source, the cache and the policy.

API Gateway caches an authorizer's answer per identity source value (here the ``x-api-key`` header) for
``authorizerResultTtlInSeconds``; a cached policy is applied to every route, so it must list them all.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

# The function of an integration or authorizer URI (...:lambda:path/2015-03-31/functions/<arn>/invocations).
FUNCTION_IN_URI = re.compile(r"functions/(arn:aws:lambda:[^/]+)/invocations")


@dataclass(frozen=True)
class Authorizer:
    name: str
    function_arn: str
    headers: tuple[str, ...]  # the identity source: method.request.header.<name>, lower-cased
    ttl_seconds: int


@dataclass(frozen=True)
class Decision:
    """What the authorizer said: ``outcome`` is ``allow``, ``deny`` (403), ``unauthorized`` (401) or ``failure``."""

    outcome: str
    principal_id: str = ""
    context: dict | None = None
    usage_key: str | None = None


def authorizers_from_openapi(body: dict) -> dict[str, Authorizer]:
    found = {}
    for name, scheme in body.get("components", {}).get("securitySchemes", {}).items():
        config = scheme.get("x-amazon-apigateway-authorizer")
        if not config or config.get("type", "").lower() != "request":
            continue
        match = FUNCTION_IN_URI.search(str(config.get("authorizerUri", "")))
        if not match:
            continue
        headers = tuple(source.split("method.request.header.", 1)[1].lower()
                        for source in str(config.get("identitySource", "")).split(",")
                        if source.strip().startswith("method.request.header."))
        found[name] = Authorizer(name, match.group(1), headers, int(config.get("authorizerResultTtlInSeconds", 300)))
    return found


def resource_matches(pattern: str, arn: str) -> bool:
    """IAM's resource match: ``*`` any run of characters (``/`` included), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn, flags=re.DOTALL) is not None


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def evaluate(policy: dict, method_arn: str) -> bool:
    """Whether ``policy`` allows execute-api:Invoke on ``method_arn`` (an explicit Deny wins)."""
    allowed = False
    statements = policy.get("Statement") or []
    for statement in [statements] if isinstance(statements, dict) else statements:
        actions = _listed(statement.get("Action"))
        if not any(action in ("*", "execute-api:*", "execute-api:Invoke") for action in actions):
            continue
        if not any(resource_matches(resource, method_arn) for resource in _listed(statement.get("Resource"))):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


class AuthorizerCache:
    """Answers per (authorizer, identity) until their TTL ends, as API Gateway keeps them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._answers: dict[tuple, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            cached = self._answers.get(key)
            if cached is None or cached[0] <= self.clock():
                self._answers.pop(key, None)
                return None
            return cached[1]

    def put(self, key: tuple, answer: dict, ttl_seconds: int) -> None:
        if ttl_seconds > 0:
            with self._lock:
                self._answers[key] = (self.clock() + ttl_seconds, answer)


def decide(answer: dict, method_arn: str) -> Decision:
    """The decision of an authorizer's (cached or fresh) answer for one request."""
    if not isinstance(answer, dict) or not isinstance(answer.get("policyDocument"), dict):
        return Decision("failure")
    context = {k: v for k, v in (answer.get("context") or {}).items() if isinstance(v, (str, int, float, bool))}
    principal = str(answer.get("principalId", ""))
    usage_key = answer.get("usageIdentifierKey")
    if not evaluate(answer["policyDocument"], method_arn):
        return Decision("deny", principal, context, usage_key)
    return Decision("allow", principal, context, usage_key)
