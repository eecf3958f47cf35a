"""The web console's static files at ``/console`` of the local API front (on AWS: CloudFront and a private bucket).

Only files under ``console/`` with a known type are served, GET and HEAD only, never outside that folder (no
``..``, no hidden files, no links out of it), each with the same strict Content-Security-Policy that the
template's ``ConsoleResponseHeadersPolicy`` sends on AWS. ``config.json`` is generated: the console calls the
API on its own origin.
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
PREFIX = "/console"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

Answer = tuple[int, dict[str, str], bytes]


def content_security_policy(s3_origins: list[str]) -> str:
    """The console's CSP: its own files and API only, plus the S3 endpoint for presigned images, JSON artifacts
    and uploads; drawn images from blob: and data: URLs; no inline script or style, no framing."""
    s3 = " ".join(s3_origins)
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src 'self' blob: data: {s3}".rstrip(),
        f"connect-src 'self' {s3}".rstrip(),
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def s3_origins(endpoint: str | None) -> list[str]:
    """The origins presigned URLs of ``endpoint`` may have: path style on the endpoint itself, or virtual-hosted
    (``<bucket>.<host>``) when the host is a name rather than an address."""
    if not endpoint:
        return []
    url = urlsplit(endpoint)
    origin = f"{url.scheme}://{url.netloc}"
    host = url.hostname or ""
    if host.replace(".", "").isdigit() or ":" in host:
        return [origin]
    return [origin, f"{url.scheme}://*.{url.netloc}"]


def published_files(root: Path = CONSOLE_DIR) -> dict[str, Path]:
    """Every file the console serves, by its path relative to ``root`` (what ``sightline deploy`` uploads to the
    console bucket): the known types only, no hidden names, nothing whose real path leaves ``root``."""
    site = ConsoleSite(root)
    found: dict[str, Path] = {}
    for path in sorted(site.root.rglob("*")):
        relative = path.relative_to(site.root).as_posix()
        target = site._resolve(relative) if path.is_file() else None
        if target is not None and relative != "config.json":  # config.json is written per deployment
            found[relative] = target
    return found


class ConsoleSite:
    def __init__(self, root: Path = CONSOLE_DIR, s3_endpoint: str | None = None) -> None:
        self.root = root.resolve()
        self.headers = {
            "Content-Security-Policy": content_security_policy(s3_origins(s3_endpoint)),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }

    def answer(self, method: str, path: str, headers: dict[str, str]) -> Answer | None:
        """The response for ``path`` (no query) when it is the console's; None for every other path."""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return None
        if method not in ("GET", "HEAD"):
            return self._plain(405, "method not allowed", {"Allow": "GET, HEAD"})
        if path == PREFIX:
            return 301, {**self.headers, "Location": PREFIX + "/", "Content-Type": "text/plain; charset=utf-8"}, b""
        relative = unquote(path[len(PREFIX) + 1:]) or "index.html"
        if relative == "config.json":
            return self._file(".json", json.dumps(self.config(headers)).encode(), method)
        target = self._resolve(relative)
        if target is None:
            return self._plain(404, "not found")
        return self._file(target.suffix, target.read_bytes(), method)

    def config(self, headers: dict[str, str]) -> dict[str, str]:
        host = next((value for key, value in headers.items() if key.lower() == "host"), "")
        return {"api_base": "", "api_url": f"http://{host}" if host else "", "environment": "local"}

    def _resolve(self, relative: str) -> Path | None:
        """The file ``relative`` names inside the console folder, or None: no traversal, no hidden or odd names,
        nothing whose real path (links followed) leaves the folder, only the known types."""
        if "\\" in relative or "\x00" in relative or relative.startswith("/"):
            return None
        parts = relative.split("/")
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return None
        if posixpath.normpath(relative) != relative:
            return None
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        if candidate.suffix not in CONTENT_TYPES:
            return None
        return candidate

    def _file(self, suffix: str, data: bytes, method: str) -> Answer:
        headers = {**self.headers, "Content-Type": CONTENT_TYPES[suffix]}
        return 200, headers, b"" if method == "HEAD" else data

    def _plain(self, status: int, text: str, extra: dict[str, str] | None = None) -> Answer:
        return status, {**self.headers, "Content-Type": "text/plain; charset=utf-8", **(extra or {})}, text.encode()
