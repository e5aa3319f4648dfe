"""The ``checkout-recs`` command.

Each area of the system registers its commands from ``cli/<area>.py`` (a
``register(app)`` function). Command modules import heavy libraries inside the command bodies so
that ``checkout-recs --help`` stays fast.

Conventions every command follows (exit status rule: ``cli/common.py``):

- ``--version`` prints the installed package's version;
- an exception a command does not handle prints one ``error: <Type>: <message>`` line on stderr
  and exits 1, unless ``--debug`` (or ``CHECKOUT_RECS_DEBUG=1``) asks for the traceback;
- one option name per concept, each with its standard environment variable (``--tracking-uri``
  ``MLFLOW_TRACKING_URI``, ``--artifact-root`` ``CHECKOUT_RECS_ARTIFACT_ROOT``, ``--redis-url``
  ``CHECKOUT_RECS_REDIS_URL``, ``--s3-endpoint-url`` ``AWS_ENDPOINT_URL_S3``, ...:
  ``tests/code/cli/test_conventions.py`` holds the table and checks every command against it).
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import cli as _commands
from cli.common import EXIT_RUNTIME, error_line

PACKAGE = "checkout-recs"
DEBUG_ENV = "CHECKOUT_RECS_DEBUG"


def _passes_through(exc: BaseException) -> bool:
    """Exceptions typer turns into an exit status itself: ``Exit``, ``Abort`` and its own errors
    (``TyperException``: usage errors such as ``BadParameter``, exit 2), and end of input."""
    return isinstance(exc, typer.Exit | typer.Abort | typer.TyperException | EOFError)


class CheckoutRecsGroup(TyperGroup):
    """The root group: an unhandled exception of any command becomes one ``error:`` line and
    exit 1 (the traceback only with ``--debug`` / ``CHECKOUT_RECS_DEBUG=1``)."""

    def invoke(self, ctx: Any) -> Any:  # noqa: ANN401 - click's Context and a command's return value
        """Run the command; turn an exception it does not handle into exit 1 with one line."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _passes_through(exc) or ctx.params.get("debug"):
                raise
            typer.echo(
                error_line(f"{type(exc).__name__}: {exc} (--debug for the traceback)"), err=True
            )
            raise typer.Exit(code=EXIT_RUNTIME) from exc


app = typer.Typer(
    name=PACKAGE,
    cls=CheckoutRecsGroup,
    help="Post-checkout recommendations: simulate, ingest, train, serve, measure, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def installed_version() -> str:
    """The installed package's version (``importlib.metadata``), or ``unknown`` when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PACKAGE} {installed_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the installed version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="Show the traceback of an unexpected error instead of one line.",
        ),
    ] = False,
) -> None:
    """Post-checkout recommendations: simulate, ingest, train, serve, measure, deploy."""


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
