"""Helpers shared by the command modules of ``cli/``: one way to fail with a message, one way to
write a results file. Command modules import from here, never from each other."""

from __future__ import annotations

from pathlib import Path

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr and return the ``typer.Exit`` to raise."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=code)


def write_results(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` (parents created) and say where."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    typer.echo(f"figures written to {path}")
