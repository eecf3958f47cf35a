"""An API Gateway front on 127.0.0.1:3000 (the ``sam local start-api`` convention).

Routes, API-key requirements, binary media types and gateway responses all come from the REST API's
OpenAPI body in the expanded template; requests become REST proxy events for the routed function.
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
_FUNCTION_IN_URI = re.compile(r"functions/(arn:aws:lambda:[^/]+)/invocations")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # /v1/models/{id}
    pattern: re.Pattern
    function_arn: str
    api_key_required: bool


def routes_from_openapi(body: dict) -> list[Route]:
    routes = []
    for path, methods in body.get("paths", {}).items():
        pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")
        for method, operation in methods.items():
            integration = operation.get("x-amazon-apigateway-integration", {})
            match = _FUNCTION_IN_URI.search(str(integration.get("uri", "")))
            if not match:
                continue
            required = any("api_key" in requirement for requirement in operation.get("security", []))
            routes.append(Route(method.upper(), path, pattern, match.group(1), required))
    # Literal segments win over parameters, as in API Gateway.
    return sorted(routes, key=lambda r: r.template.count("{"))


class ApiFront:
    def __init__(self, body: dict, runtime: LambdaRuntime, valid_keys: Callable[[], set[str]], stage: str) -> None:
        self.routes = routes_from_openapi(body)
        self.binary_types = [t.replace("~1", "/") for t in body.get("x-amazon-apigateway-binary-media-types", [])]
        self.gateway_responses = body.get("x-amazon-apigateway-gateway-responses", {})
        self.runtime = runtime
        self.valid_keys = valid_keys
        self.stage = stage

    # ------------------------------------------------------------ request handling
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(raw_path)
        path = url.path
        if len(body) > MAX_REQUEST_BODY_BYTES:
            return self._gateway_response("REQUEST_TOO_LARGE", 413, PAYLOAD_TOO_LARGE)
        matched = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        if not matched:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, NOT_FOUND)
        for route, match in matched:
            if route.method == method:
                break
        else:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, NOT_FOUND)
        lowered = {k.lower(): v for k, v in headers.items()}
        if route.api_key_required and lowered.get("x-api-key") not in self.valid_keys():
            return self._gateway_response("INVALID_API_KEY", 403, FORBIDDEN)
        event = self._proxy_event(route, match.groupdict(), method, path, url.query, headers, body, source_ip)
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

    def _proxy_event(self, route: Route, params: dict, method: str, path: str, query: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict:
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
        request_id = str(uuid.uuid4())
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
                "apiId": "local",
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

    def _gateway_response(self, kind: str, default_status: int, default_body: dict) -> tuple[int, dict[str, str], bytes]:
        configured = self.gateway_responses.get(kind)
        if configured:
            template = configured.get("responseTemplates", {}).get("application/json")
            return int(configured.get("statusCode", default_status)), {"content-type": "application/json"}, (template or "").encode()
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
