"""A fake Sightline API (and S3 for presigned URLs) on a real socket: ``http.server`` in a thread.

Each test scripts the answers it needs (``fake.on(method, path, answer)``; an answer is a dict of JSON, a
``Reply``, a list of them given in turn, or a function of the request), and reads back every request it got.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "test-key-0123456789abcdef"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON, or bytes as they are
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str = "it went wrong", **extra: Any) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message, **extra}})


class FakeApi:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Any]] = []
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                                  dict(self.headers.items()), body)
                reply = fake.answer(request)
                payload = reply.body if isinstance(reply.body, bytes) else (
                    b"" if reply.body is None else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, answer: Any) -> None:
        """Answer ``method`` on paths matching ``path`` (a regex, anchored) with ``answer``."""
        self.routes.insert(0, (method, re.compile(path + r"\Z"), list(answer) if isinstance(answer, list) else answer))

    def answer(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            for method, pattern, answer in self.routes:
                if method == request.method and pattern.match(request.path):
                    if isinstance(answer, list):
                        answer = answer.pop(0) if len(answer) > 1 else answer[0]
                    break
            else:
                return error(404, "no_fake_route", f"the fake API has no {request.method} {request.path}")
        if callable(answer):
            answer = answer(request)
        return answer if isinstance(answer, Reply) else Reply(200, answer)

    def sent(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method)
                and (path is None or re.fullmatch(path, r.path))]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sleeps(list):
    """A sleep that only records how long it was asked to wait, and a clock that moves by those waits."""

    now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now
