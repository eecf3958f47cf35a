"""A small HTTP client for the Sightline API (used by the demo and the end-to-end tests)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class SightlineClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = None, api_key: str | None = ...) -> Response:  # type: ignore[assignment]
        headers: dict[str, str] = {}
        key = self.api_key if api_key is ... else api_key
        if key:
            headers["x-api-key"] = key
        data: bytes | None = None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
            headers["Content-Type"] = content_type or "application/octet-stream"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Response(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers.items()), error.read())

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, body, **kwargs)

    def wait_for(self, path: str, done: Any, timeout: float, interval: float = 1.0) -> dict:
        """Poll ``GET path`` until ``done(json)`` holds; the last answer is in the error otherwise."""
        deadline = time.time() + timeout
        last: Any = None
        while time.time() < deadline:
            response = self.get(path)
            if response.status == 200:
                last = response.json()
                if done(last):
                    return last
            else:
                last = (response.status, response.body[:500])
            time.sleep(interval)
        raise TimeoutError(f"{path} did not reach the expected state in {timeout:.0f} s; last answer: {last}")
