"""The ``checkout-recs`` command.

Each area of the system registers its commands from ``cli/<area>.py`` (a
``register(app)`` function). Command modules import heavy libraries inside the command bodies so
that ``checkout-recs --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import cli as _commands

app = typer.Typer(
    name="checkout-recs",
    help="Post-checkout recommendations: simulate, ingest, train, serve, measure, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if mod.name == "app":
            continue
        module = importlib.import_module(f"cli.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()

if __name__ == "__main__":  # pragma: no cover
    app()
