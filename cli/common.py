"""Helpers shared by the command modules of ``cli/``: one way to fail with a message, one way to
write a results file. Command modules import from here, never from each other."""

from __future__ import annotations

from pathlib import Path

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: <message>`` as one line on stderr (never wrapped, whatever the terminal
    width, so scripts can grep it) and return the ``typer.Exit`` to raise with ``code``."""
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    return typer.Exit(code=code)


def write_results(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` (parents created) and say where."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    typer.echo(f"figures written to {path}")
