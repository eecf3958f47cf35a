"""An API Gateway front on 127.0.0.1:3000 (the ``sam local start-api`` convention).

Routes, API-key requirements, Lambda authorizers, MOCK integrations, binary media types and gateway responses
all come from the REST API's OpenAPI body in the expanded template, throttles from the stage's MethodSettings
and the usage plan; requests become REST proxy events for the routed function.
"""
from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from sightline_local.api_authorizer import (FUNCTION_IN_URI, Authorizer, AuthorizerCache, Decision,
                                            authorizers_from_openapi, decide)
from sightline_local.api_throttle import Throttles
from sightline_local.console_site import ConsoleSite
from sightline_local.lambda_runtime import LambdaRuntime

log = logging.getLogger("sightline.local.api")

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit for REST APIs
# Lambda's limit for a synchronous invocation: the whole proxy event as JSON, a base64 body included, so a
# binary body of more than about 4.5 MiB never reaches the function although API Gateway accepted it.
MAX_LAMBDA_EVENT_BYTES = 6_291_456
PAYLOAD_TOO_LARGE = {
    "error": {
        "code": "payload_too_large",
        "message": (
            f"the request is too large: API Gateway accepts bodies up to {MAX_REQUEST_BODY_BYTES:,} bytes (10 MB) "
            f"and the function's event, base64 body included, may be at most {MAX_LAMBDA_EVENT_BYTES:,} bytes, "
            f"so a binary image may be about {MAX_LAMBDA_EVENT_BYTES * 3 / 4 / 2**20:.1f} MiB at most"
        ),
    }
}
NOT_FOUND = {"message": "Missing Authentication Token"}
FORBIDDEN = {"message": "Forbidden"}
# API Gateway's own bodies, where the API configures no gateway response.
UNAUTHORIZED = {"message": "Unauthorized"}
ACCESS_DENIED = {"Message": "User is not authorized to access this resource with an explicit deny"}
AUTHORIZER_FAILURE = {"message": None}
THROTTLED = {"message": "Too Many Requests"}
QUOTA_EXCEEDED = {"message": "Limit Exceeded"}


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # /v1/models/{id}
    pattern: re.Pattern
    function_arn: str  # "" for a MOCK integration
    api_key_required: bool
    authorizer: str | None = None  # the name of its Lambda authorizer, None for none
    mock: dict | None = None  # a MOCK integration's {"statusCode", "body"}
    iam: bool = False  # AWS_IAM authorization (SigV4)


def routes_from_openapi(body: dict) -> list[Route]:
    routes = []
    for path, methods in body.get("paths", {}).items():
        pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")
        for method, operation in methods.items():
            integration = operation.get("x-amazon-apigateway-integration", {})
            security = operation.get("security", body.get("security", []))
            required = any("api_key" in requirement for requirement in security)
            authorizer = next((name for requirement in security for name in requirement
                               if name not in ("api_key", "AWS_IAM")), None)
            iam = any("AWS_IAM" in requirement for requirement in security)
            if str(integration.get("type", "")).lower() == "mock":
                routes.append(Route(method.upper(), path, pattern, "", required, authorizer, _mock(integration), iam))
                continue
            match = FUNCTION_IN_URI.search(str(integration.get("uri", "")))
            if not match:
                continue
            routes.append(Route(method.upper(), path, pattern, match.group(1), required, authorizer, iam=iam))
    # Literal segments win over parameters, as in API Gateway.
    return sorted(routes, key=lambda r: r.template.count("{"))


def _mock(integration: dict) -> dict:
    """What a MOCK integration answers: its default response's status and JSON template (no function runs)."""
    response = integration.get("responses", {}).get("default", {})
    return {"statusCode": int(response.get("statusCode", 200)),
            "body": response.get("responseTemplates", {}).get("application/json", "")}


class ApiFront:
    def __init__(self, body: dict, runtime: LambdaRuntime, valid_key: Callable[[str], bool], stage: str, *,
                 api_id: str = "local", region: str = "us-east-1", method_settings: list[dict] | None = None, usage_plan: dict | None = None,
                 clock: Callable[[], float] = time.monotonic, console: ConsoleSite | None = None) -> None:
        self.routes = routes_from_openapi(body)
        # The web console at /console (static files; presigned URLs point at the functions' AWS endpoint).
        # A test's stand-in runtime may have no environment: then the CSP names no S3 endpoint.
        environment = getattr(runtime, "base_env", None) or {}
        self.console = console or ConsoleSite(s3_endpoint=environment.get("AWS_ENDPOINT_URL"))
        self.binary_types = [t.replace("~1", "/") for t in body.get("x-amazon-apigateway-binary-media-types", [])]
        self.gateway_responses = body.get("x-amazon-apigateway-gateway-responses", {})
        self.authorizers = authorizers_from_openapi(body)
        # AUTHORIZER: the usage key is the authorizer's usageIdentifierKey; HEADER: the x-api-key header.
        self.api_key_source = str(body.get("x-amazon-apigateway-api-key-source", "HEADER")).upper()
        self.authorizer_cache = AuthorizerCache(clock)
        self.throttles = Throttles(method_settings or [], usage_plan, clock)
        self.runtime = runtime
        self.valid_key = valid_key
        self.stage = stage
        self.api_id = api_id
        self.region = region

    # ------------------------------------------------------------ request handling
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(raw_path)
        path = url.path
        console = self.console.answer(method, path, headers)
        if console is not None:
            return console
        if len(body) > MAX_REQUEST_BODY_BYTES:
            return self._gateway_response("REQUEST_TOO_LARGE", 413, PAYLOAD_TOO_LARGE)
        matched = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        if not matched:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, NOT_FOUND)
        found = next(((route, match) for route, match in matched if route.method == method), None)
        if found is None:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, NOT_FOUND)
        route, match = found
        request_id = str(uuid.uuid4())
        if not self.throttles.method_allows(method, route.template):
            return self._gateway_response("THROTTLED", 429, THROTTLED, request_id)
        lowered = {k.lower(): v for k, v in headers.items()}
        event = self._proxy_event(route, match.groupdict(), method, path, url.query, headers, body, source_ip,
                                  request_id)
        usage_key = lowered.get("x-api-key")
        if route.iam:
            # An unsigned request gets API Gateway's answer; a signature is not verified here (no IAM locally).
            if not lowered.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
                return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, NOT_FOUND, request_id)
            log.warning("%s %s: AWS_IAM authorization: the SigV4 signature is not checked by the local stack",
                        method, path)
        if route.authorizer is not None:
            decision = self._authorize(self.authorizers[route.authorizer], event, lowered)
            if decision.outcome != "allow":
                kind, status, default = {
                    "unauthorized": ("UNAUTHORIZED", 401, UNAUTHORIZED),
                    "deny": ("ACCESS_DENIED", 403, ACCESS_DENIED),
                }.get(decision.outcome, ("AUTHORIZER_FAILURE", 500, AUTHORIZER_FAILURE))
                return self._gateway_response(kind, status, default, request_id)
            event["requestContext"]["authorizer"] = {"principalId": decision.principal_id, **(decision.context or {})}
            if self.api_key_source == "AUTHORIZER":
                usage_key = decision.usage_key
        if route.api_key_required:
            if not usage_key or not self.valid_key(usage_key):
                return self._gateway_response("INVALID_API_KEY", 403, FORBIDDEN, request_id)
            event["requestContext"]["identity"]["apiKey"] = usage_key
            refused = self.throttles.key_allows(usage_key)
            if refused:
                return self._gateway_response(refused, 429, THROTTLED if refused == "THROTTLED" else QUOTA_EXCEEDED,
                                              request_id)
        if route.mock is not None:
            return route.mock["statusCode"], {"content-type": "application/json"}, route.mock["body"].encode()
        event_bytes = len(json.dumps(event).encode())
        if event_bytes > MAX_LAMBDA_EVENT_BYTES:
            # Lambda refuses the invocation before the function runs; API Gateway answers for it.
            log.warning("%s %s: the event is %d bytes, over Lambda's %d", method, path, event_bytes, MAX_LAMBDA_EVENT_BYTES)
            return self._gateway_response("REQUEST_TOO_LARGE", 413, PAYLOAD_TOO_LARGE)
        result = self.runtime.invoke(route.function_arn, event)
        if result.error:
            log.error("%s %s: integration failed: %s", method, path, result.payload.get("errorMessage"))
            return 502, {"content-type": "application/json"}, b'{"message": "Internal server error"}'
        return self._proxy_response(result.payload)

    def _authorize(self, authorizer: Authorizer, event: dict, lowered: dict[str, str]) -> Decision:
        """Run (or recall) a REQUEST authorizer for this request, as API Gateway does."""
        identity = tuple(lowered.get(header) for header in authorizer.headers)
        if not all(identity):
            return Decision("unauthorized")  # API Gateway answers 401 without invoking the authorizer
        method_arn = (f"arn:aws:execute-api:{self.region}:{event['requestContext']['accountId']}:"
                      f"{self.api_id}/{self.stage}/{event['httpMethod']}{event['path']}")
        cache_key = (authorizer.name, identity)
        answer = self.authorizer_cache.get(cache_key)
        if answer is not None:
            return decide(answer, method_arn)
        request = {key: value for key, value in event.items() if key not in ("body", "isBase64Encoded")}
        result = self.runtime.invoke(authorizer.function_arn, {"type": "REQUEST", "methodArn": method_arn,
                                                               **request})
        if result.error:
            message = result.payload.get("errorMessage") if isinstance(result.payload, dict) else None
            if message == "Unauthorized":
                return Decision("unauthorized")
            log.error("authorizer %s failed: %s", authorizer.name, message)
            return Decision("failure")
        decision = decide(result.payload, method_arn)
        if decision.outcome == "failure":
            log.error("authorizer %s answered no policy: %r", authorizer.name, result.payload)
            return decision
        self.authorizer_cache.put(cache_key, result.payload, authorizer.ttl_seconds)
        return decision

    def _proxy_event(self, route: Route, params: dict, method: str, path: str, query: str, headers: dict[str, str], body: bytes, source_ip: str, request_id: str | None = None) -> dict:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        binary = any(fnmatch.fnmatch(content_type.split(";")[0].strip(), t) for t in self.binary_types)
        if binary:
            event_body, is_base64 = base64.b64encode(body).decode(), True
        else:
            try:
                event_body, is_base64 = body.decode("utf-8"), False
            except UnicodeDecodeError:
                event_body, is_base64 = base64.b64encode(body).decode(), True
        multi_query = parse_qs(query, keep_blank_values=True)
        request_id = request_id or str(uuid.uuid4())
        return {
            "resource": route.template,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.template,
                "httpMethod": method,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "requestId": request_id,
                "requestTimeEpoch": int(time.time() * 1000),
                "identity": {"sourceIp": source_ip, "apiKey": next((v for k, v in headers.items() if k.lower() == "x-api-key"), None)},
                "accountId": "123456789012",
                "apiId": self.api_id,
            },
            "body": event_body if body else None,
            "isBase64Encoded": is_base64 if body else False,
        }

    @staticmethod
    def _proxy_response(payload: Any) -> tuple[int, dict[str, str], bytes]:
        if not isinstance(payload, dict) or "statusCode" not in payload:
            log.error("function returned a malformed proxy response: %r", payload)
            return 502, {"content-type": "application/json"}, b'{"message": "Internal server error"}'
        headers = {k: str(v) for k, v in (payload.get("headers") or {}).items()}
        for key, values in (payload.get("multiValueHeaders") or {}).items():
            headers[key] = ", ".join(map(str, values))
        body = payload.get("body") or ""
        data = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode()
        return int(payload["statusCode"]), headers, data

    def _gateway_response(self, kind: str, default_status: int, default_body: dict,
                          request_id: str = "") -> tuple[int, dict[str, str], bytes]:
        configured = self.gateway_responses.get(kind)
        if configured:
            template = (configured.get("responseTemplates", {}).get("application/json") or "")
            template = template.replace("$context.requestId", request_id)
            return int(configured.get("statusCode", default_status)), {"content-type": "application/json"}, template.encode()
        return default_status, {"content-type": "application/json"}, json.dumps(default_body).encode()

    # ------------------------------------------------------------ HTTP server
    def serve(self, host: str, port: int) -> ApiServer:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_REQUEST_BODY_BYTES:
                    status, headers, data = front._gateway_response("REQUEST_TOO_LARGE", 413, PAYLOAD_TOO_LARGE)
                    self.close_connection = True
                else:
                    body = self.rfile.read(length) if length else b""
                    try:
                        status, headers, data = front.handle(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
                    except Exception:  # noqa: BLE001 - the front must answer, like API Gateway does
                        log.exception("request %s %s broke the local API front", self.command, self.path)
                        status, headers, data = 500, {"content-type": "application/json"}, b'{"message": "Internal server error"}'
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the front, which answers those no route has as API Gateway does (403),
                # instead of http.server's 501 for TRACE, CONNECT or a made-up verb.
                if name.startswith("do_"):
                    return self._any
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                log.info("%s %s", self.address_string(), format % args)

        return ApiServer((host, port), Handler)


class ApiServer(ThreadingHTTPServer):
    """The front's HTTP server: a thread per connection, a listen backlog for bursts, rebindable after a stop."""

    # Past socketserver's default backlog of 5, a burst of clients is dropped: resets, or on Linux SYN retries
    # that stall each extra client for a second or more.
    request_queue_size = 128
    # A stopped front's connections linger in TIME_WAIT; the next stack must still bind the port.
    allow_reuse_address = True
    daemon_threads = True
