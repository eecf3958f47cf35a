"""What the commands print: the API's JSON (``--json``), or Rich tables on stdout; progress and notes on stderr."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

WIDTH_OFF_TERMINAL = 200  # tables sent to a file or a pipe are not cut at 80 columns


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else WIDTH_OFF_TERMINAL, highlight=False,
                   soft_wrap=False)


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def note(text: str) -> None:
    """A line for people, on stderr (stdout stays the command's result)."""
    print(text, file=sys.stderr)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell(value)) for value in row))
    console().print(grid)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """``name  value`` lines for one object."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in pairs:
        grid.add_row(name, Text(cell(value)))
    console().print(grid)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items()) or "-"
    return str(value)


def seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    value = int(value)
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}" if value >= 3600 else f"{value // 60}:{value % 60:02d}"
