"""pyproject.toml declares what each part needs, and requirements.txt (what `make` installs) pins each of those."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pinned() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {_name(line) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_every_declared_dependency_is_pinned_and_every_pin_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared |= {_name(r) for r in requirements if not r.startswith("sightline[")}
    assert declared - _pinned() == set(), "declared in pyproject.toml but not pinned in requirements.txt"
    assert _pinned() - declared == set(), "pinned in requirements.txt but declared nowhere in pyproject.toml"


def test_the_command_the_package_installs_exists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"]["sightline"].partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), function))


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a lock file `make lock` wrote."""
    locked: dict[str, tuple[str, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\[\],-]+)==([^ ;\\]+)", line):
            name = _name(match.group(1))
            locked[name] = (match.group(2), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, hashes = locked[name]
            locked[name] = (version, hashes + 1)
    return locked


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


@pytest.mark.parametrize(("pins", "lock"), [("requirements.txt", "requirements.lock"),
                                            ("requirements-lint.txt", "requirements-lint.lock")])
def test_each_lock_file_holds_every_pin_at_its_version_and_every_package_with_hashes(pins, lock):
    locked = _locked(ROOT / lock)
    stale = {name: (version, locked.get(name, ("missing", 0))[0])
             for name, version in _pins(ROOT / pins).items() if locked.get(name, ("", 0))[0] != version}
    assert stale == {}, f"{lock} is out of step with {pins} (pinned, locked): run `make lock`"
    assert [name for name, (_, hashes) in locked.items() if hashes == 0] == [], f"{lock} has packages without hashes"
    assert len(locked) > len(_pins(ROOT / pins))  # their own dependencies are locked too


def test_the_python_code_passes_ruff():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.fail("ruff is not installed: make install (requirements.lock)")
    done = subprocess.run([str(ruff), "check", "--quiet", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
