"""pyproject.toml declares what each part needs, and requirements.txt (what `make` installs) pins each of those."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pinned() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {_name(line) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_every_declared_dependency_is_pinned_and_every_pin_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        declared |= {_name(r) for r in requirements if not r.startswith("sightline[")}
    assert declared - _pinned() == set(), "declared in pyproject.toml but not pinned in requirements.txt"
    assert _pinned() - declared == set(), "pinned in requirements.txt but declared nowhere in pyproject.toml"


def test_the_command_the_package_installs_exists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"]["sightline"].partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), function))
