"""Where the client finds the API and its key.

Each setting is taken from the first of: the argument, the environment (``SIGHTLINE_API_URL``,
``SIGHTLINE_API_KEY``), the file ``sightline configure`` writes (``$XDG_CONFIG_HOME/sightline/config.json``, else
``~/.config/sightline/config.json``; mode 0600), and for a local stack its defaults (``http://127.0.0.1:3000`` and
the key in ``.sightline/api-key``). The file's key is used only with the file's own URL, and the local stack's key
file only for a loopback URL, so a key never travels to an endpoint it was not configured for.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sightline_client.errors import ConfigurationError

URL_VARIABLE = "SIGHTLINE_API_URL"
KEY_VARIABLE = "SIGHTLINE_API_KEY"
DEFAULT_API_URL = "http://127.0.0.1:3000"
LOCAL_KEY_FILE = Path(".sightline") / "api-key"
LOOPBACK_HOSTS = ("localhost", "::1")


@dataclass(frozen=True)
class Config:
    api_url: str
    api_key: str | None
    url_source: str  # "argument", "environment", "config file" or "default"
    key_source: str | None  # the same, "local stack key file", or None when there is no key


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "sightline" / "config.json"


def normalise_url(url: str) -> str:
    """``url`` without a trailing slash (nor a trailing ``/v1``), or a ConfigurationError saying what is wrong."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"the API URL must be http:// or https:// with a host, like {DEFAULT_API_URL}, "
                                 f"got {url[:200]!r}")
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def read_config_file(path: Path) -> dict[str, str]:
    """The saved settings (``api_url``, ``api_key``); {} when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigurationError(f"{path} is not JSON ({error}); run `sightline configure` again") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(field, ""), str)
                                                 for field in ("api_url", "api_key")):
        raise ConfigurationError(f'{path} must be a JSON object {{"api_url": "...", "api_key": "..."}}; '
                                 "run `sightline configure` again")
    return {field: document[field] for field in ("api_url", "api_key") if document.get(field)}


def write_config_file(api_url: str, api_key: str | None, path: Path | None = None) -> Path:
    """Save the settings where :func:`resolve` finds them; the file is readable by this user only (0600)."""
    path = config_path() if path is None else path
    document = {"api_url": normalise_url(api_url)}
    if api_key:
        document["api_key"] = api_key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    # Created 0600 (never wider, not even for a moment), then moved over the old file in one step.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)
    return path


def _local_key(cwd: Path) -> str | None:
    try:
        return (cwd / LOCAL_KEY_FILE).read_text().strip() or None
    except OSError:  # no local stack here
        return None


def resolve(api_url: str | None = None, api_key: str | None = None, *, env: Mapping[str, str] | None = None,
            path: Path | None = None, cwd: Path | None = None) -> Config:
    """The settings to use: see the module's description for the order."""
    env = os.environ if env is None else env
    saved = read_config_file(config_path(env) if path is None else path)
    if api_url:
        url, url_source = normalise_url(api_url), "argument"
    elif env.get(URL_VARIABLE):
        url, url_source = normalise_url(env[URL_VARIABLE]), "environment"
    elif saved.get("api_url"):
        url, url_source = normalise_url(saved["api_url"]), "config file"
    else:
        url, url_source = DEFAULT_API_URL, "default"
    key: str | None
    if api_key:
        key, key_source = api_key, "argument"
    elif env.get(KEY_VARIABLE):
        key, key_source = env[KEY_VARIABLE], "environment"
    elif saved.get("api_key") and normalise_url(saved.get("api_url", DEFAULT_API_URL)) == url:
        key, key_source = saved["api_key"], "config file"
    elif is_loopback(url) and (key := _local_key(Path.cwd() if cwd is None else cwd)):
        key_source = "local stack key file"
    else:
        key, key_source = None, None
    return Config(api_url=url, api_key=key, url_source=url_source, key_source=key_source)
