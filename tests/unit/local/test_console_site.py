"""The web console as the local API front serves it at /console: content types, the CSP and security headers,
generated config.json, 404s, and no way out of the console folder."""
from __future__ import annotations

import http.client
import json
import re
import threading
from pathlib import Path

import pytest

from sightline_local.apigateway import ApiFront
from sightline_local.console_site import CONSOLE_DIR, ConsoleSite, s3_origins
from sightline_local.lambda_runtime import InvocationResult

HOST = "127.0.0.1"
API = {"paths": {"/v1/health": {"get": {"x-amazon-apigateway-integration": {
    "uri": "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:function:api/invocations"}}}}}


class Runtime:
    base_env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}

    def invoke(self, name: str, event: dict) -> InvocationResult:
        return InvocationResult({"statusCode": 200, "headers": {"content-type": "application/json"},
                                 "body": json.dumps({"path": event["path"]})})


@pytest.fixture(scope="module")
def server():
    front = ApiFront(API, Runtime(), set, "prod")
    running = front.serve(HOST, 0)
    threading.Thread(target=running.serve_forever, daemon=True).start()
    yield running.server_address[1]
    running.shutdown()
    running.server_close()


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """The raw path as given (http.client sends it unchanged: no client-side '..' clean-up)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path, content_type", [
    ("/console/", "text/html; charset=utf-8"),
    ("/console/index.html", "text/html; charset=utf-8"),
    ("/console/styles.css", "text/css; charset=utf-8"),
    ("/console/js/app.js", "text/javascript; charset=utf-8"),
    ("/console/js/views/try.js", "text/javascript; charset=utf-8"),
    ("/console/favicon.svg", "image/svg+xml"),
])
def test_files_are_served_with_their_type_and_the_security_headers(server, path, content_type):
    status, headers, body = fetch(server, path)
    assert status == 200 and headers["content-type"] == content_type and body
    relative = path.removeprefix("/console/") or "index.html"
    assert body == (CONSOLE_DIR / relative).read_bytes()
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    # Presigned URLs of the local S3 endpoint (thumbnails, plots, uploads), and images drawn from blob:/data:.
    assert csp["img-src"].split() == ["'self'", "blob:", "data:", "http://127.0.0.1:4566"]
    assert csp["connect-src"].split() == ["'self'", "http://127.0.0.1:4566"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]


def test_head_answers_the_headers_without_a_body(server):
    status, headers, body = fetch(server, "/console/styles.css", "HEAD")
    assert (status, headers["content-type"], body) == (200, "text/css; charset=utf-8", b"")


def test_console_without_a_slash_redirects_to_the_folder(server):
    status, headers, _ = fetch(server, "/console")
    assert status == 301 and headers["location"] == "/console/"


def test_config_json_points_the_console_at_the_api_on_its_own_origin(server):
    status, headers, body = fetch(server, "/console/config.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"api_base": "", "api_url": f"http://{HOST}:{server}", "environment": "local"}


@pytest.mark.parametrize("path", [
    "/console/missing.html",
    "/console/js/",
    "/console/js",
    "/console/../README.md",
    "/console/js/../../README.md",
    "/console/%2e%2e/README.md",
    "/console/%2E%2E/%2E%2E/etc/passwd",
    "/console/..%2fREADME.md",
    "/console/js/..%2f..%2fREADME.md",
    "/console/..%5cREADME.md",
    "/console//etc/passwd",
    "/console/%2fetc/passwd",
    "/console/./index.html",
    "/console/.hidden",
    "/console/js/app.js%00.png",
])
def test_nothing_outside_the_console_folder_or_missing_is_served(server, path):
    status, headers, body = fetch(server, path)
    assert status == 404, (path, status, body[:200])
    assert b"Sightline" not in body and b"root:" not in body
    assert "content-security-policy" in headers


def test_a_link_out_of_the_folder_and_a_file_of_unknown_type_are_not_served(tmp_path):
    root = tmp_path / "console"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "secret.txt").symlink_to(tmp_path / "secret.txt")
    (root / "app.py").write_text("print('source')")
    site = ConsoleSite(root, "http://127.0.0.1:4566")
    assert site.answer("GET", "/console/index.html", {})[0] == 200
    assert site.answer("GET", "/console/secret.txt", {})[0] == 404
    assert site.answer("GET", "/console/app.py", {})[0] == 404


def test_only_get_and_head_are_allowed(server):
    status, headers, _ = fetch(server, "/console/index.html", "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_the_api_routes_are_still_the_functions(server):
    status, _, body = fetch(server, "/v1/health")
    assert status == 200 and json.loads(body) == {"path": "/v1/health"}
    assert fetch(server, "/consoles")[0] == 403  # not the console's: API Gateway's answer for no route


def test_s3_origins_allow_virtual_hosted_urls_only_for_a_host_name():
    assert s3_origins("http://127.0.0.1:4566") == ["http://127.0.0.1:4566"]
    assert s3_origins("http://localhost:4566") == ["http://localhost:4566", "http://*.localhost:4566"]
    assert s3_origins(None) == []


# ---------------------------------------------------------------- the console's own files


def _files(suffix: str) -> list[Path]:
    return sorted(CONSOLE_DIR.rglob(f"*{suffix}"))


def test_the_pages_have_no_inline_script_or_style():
    """The CSP forbids inline code, so none may be written (it would silently not run)."""
    for page in _files(".html"):
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), page
        assert "<style" not in text and not re.search(r"\sstyle=", text), page
        assert not re.search(r"\son[a-z]+=", text), page  # no inline event handlers
    for script in _files(".js"):
        text = script.read_text()
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                          "setAttribute(\"style\""):
            assert forbidden not in text, (script, forbidden)
        # Nothing from another origin (a CDN): the only URL written is the SVG namespace.
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\b)", text), script


def test_every_module_import_is_a_file_of_the_console():
    """No build step: the browser loads each import as written, so each must exist (and no CDN)."""
    imports = re.compile(r"""^\s*import\s[^;]*?from\s+["']([^"']+)["']""", re.MULTILINE)
    for script in _files(".js"):
        for target in imports.findall(script.read_text()):
            assert target.startswith("./") or target.startswith("../"), (script, target)
            assert (script.parent / target).resolve().is_file(), (script, target)


def test_the_api_key_is_kept_in_session_storage_only():
    api = (CONSOLE_DIR / "js" / "api.js").read_text()
    assert "sessionStorage.setItem(KEY_ITEM" in api
    everything = "\n".join(p.read_text() for p in _files(".js"))
    assert "document.cookie" not in everything
    assert not re.search(r"localStorage\.\w+\([^)]*(KEY|key)", everything)


def test_local_up_prints_the_console_link(tmp_path):
    from types import SimpleNamespace

    from sightline_local import cli

    stack = SimpleNamespace(api_key="k" * 32, output=lambda name: f"<{name}>", state_dir=tmp_path,
                            config=SimpleNamespace(api_url="http://127.0.0.1:3000", endpoint="http://127.0.0.1:4566",
                                                   region="us-east-1"))
    banner = cli.banner(stack, tmp_path / "api-key", show_key=False)
    assert "http://127.0.0.1:3000/console/" in banner
