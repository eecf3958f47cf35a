"""``sightline local up`` does not become a way into the machine: loopback unless told otherwise, and the API key
kept where only its user can read it."""
from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

from sightline_local import cli


class FakeStack:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.api_key = "k" * 32
        self.config = SimpleNamespace(api_url="http://127.0.0.1:3000", endpoint="http://127.0.0.1:4566", region="us-east-1")

    def output(self, name: str) -> str:
        return f"<{name}>"


def test_a_host_beyond_loopback_is_refused_without_expose(capsys):
    assert cli.main(["local", "up", "--host", "0.0.0.0", "--no-demo"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    assert cli.is_loopback("127.0.0.1") and cli.is_loopback("::1") and cli.is_loopback("127.1.2.3")
    assert not cli.is_loopback("192.168.1.5") and not cli.is_loopback("0.0.0.0")


def test_the_key_file_is_this_users_alone_and_replaces_a_planted_one(tmp_path):
    stack = FakeStack(tmp_path / "state")
    planted = stack.state_dir / "api-key"
    planted.parent.mkdir(parents=True)
    planted.write_text("someone else's")
    planted.chmod(0o666)

    path = cli.write_key_file(stack)

    assert path.read_text().strip() == stack.api_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_banner_shows_the_key_only_on_a_terminal(tmp_path):
    stack = FakeStack(tmp_path)
    key_file = tmp_path / "api-key"
    hidden = cli.banner(stack, key_file, show_key=False)
    assert stack.api_key not in hidden
    assert f"$(cat {key_file})" in hidden and "mode 0600" in hidden
    assert stack.api_key in cli.banner(stack, key_file, show_key=True)
