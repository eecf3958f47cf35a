"""The ``sightline`` command (Typer + Rich), built on :mod:`sightline_client`."""
