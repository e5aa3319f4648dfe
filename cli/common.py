"""Helpers shared by the command modules of ``cli/``: one way to fail with a message, one way to
show progress, one way to write a results file. Command modules import from here, never from
each other.

Exit status: one rule for every command
---------------------------------------
0  The command did what it was asked.

1  Runtime failure: the invocation was valid, the work could not be done. An input file or folder
   the command reads is missing, unreadable or fails validation (config files named by an option
   included: ``--policy-config``, ``--thresholds``, ``--guardrails``); a service (Redis, MLflow,
   Kubernetes, S3, an HTTP endpoint) refuses or does not answer; a pipeline step fails; any
   exception a command does not handle (printed as one ``error: <Type>: <message>`` line by
   ``cli.app``; ``--debug`` or ``CHECKOUT_RECS_DEBUG=1`` shows the traceback instead).
   A check that a command exists to make and that came out negative is also 1:
   ``drift --fail-on-drift`` with drift, ``features freshness`` with a broken SLA,
   ``pipeline compile --check`` with a stale file, ``manifests validate`` with findings,
   ``deploy canary`` not promoted, ``deploy kill-switch`` not effective.

2  Usage error: the invocation itself is wrong, and only changing it fixes it. An unknown command
   or option, a missing required option, a value that does not parse or is not one of the allowed
   choices, options that exclude or require each other (``--start`` for a region design), and
   pipeline parameters (``--param`` and the ``--params`` file, validated together) that fail
   validation. Click reports its own such errors with 2 too.

   A path is a value like any other: a well-formed path that names nothing is a runtime failure
   (1), because whether it exists is the state of the world, not of the command line. (So no
   option uses click's ``exists=True``, which would answer 2.)

3  ``register`` only: the promotion gate refused the challenger; a verdict a script branches on,
   distinct from a registry that cannot be reached (1).

``fail(message)`` is the runtime failure, ``usage_error(message)`` the usage error; both print
``error: <message>`` as one line on stderr and return the ``typer.Exit`` to raise.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_GATE_REFUSED = 3


def error_line(message: str) -> str:
    """``error: <message>`` on one line (line breaks become spaces), whatever the message."""
    return f"error: {' '.join(str(message).splitlines())}"


def fail(message: str, code: int = EXIT_RUNTIME) -> typer.Exit:
    """Print ``error: <message>`` as one line on stderr (never wrapped, whatever the terminal
    width, so scripts can grep it) and return the ``typer.Exit`` to raise: ``code`` is
    ``EXIT_RUNTIME`` (1, the default) or ``EXIT_USAGE`` (2; say ``usage_error`` instead)."""
    if code not in (EXIT_RUNTIME, EXIT_USAGE):
        raise ValueError(
            f"fail() exits {EXIT_RUNTIME} (runtime) or {EXIT_USAGE} (usage), not {code}"
        )
    typer.echo(error_line(message), err=True)
    return typer.Exit(code=code)


def usage_error(message: str) -> typer.Exit:
    """``fail`` for a usage error (exit 2): the invocation is wrong, see the module docstring."""
    return fail(message, EXIT_USAGE)


def given_on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` (its Python name) was typed, rather than taken from its
    environment variable or its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


class ProgressReporter:
    """Progress of one long command, on stderr so stdout stays parseable.

    On a terminal: a rich spinner (stages) or bar (counted work) with the elapsed time. Elsewhere
    (logs, CI, pipes): one plain line per stage, and one per tenth of counted work.
    """

    def __init__(self, command: str, console: Console, bar: RichProgress | None) -> None:
        self.command = command
        self.console = console
        self._bar = bar
        self._task: TaskID | None = bar.add_task(command, total=None) if bar is not None else None
        self._t0 = time.perf_counter()
        self._last_tenth = -1

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self._t0:.1f} s"

    def stage(self, name: str) -> None:
        """A new stage starts: say which (a line on a terminal too, so the stages stay visible)."""
        self.console.print(
            f"{self.command}: {name} … [{self._elapsed()}]", highlight=False, markup=False
        )
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=f"{self.command}: {name}", total=None)

    def count(self, done: int, total: int, unit: str = "") -> None:
        """``done`` of ``total`` items so far (call as often as you like)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        tenth = 10 * done // max(total, 1)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.console.print(
                f"{self.command}: {done}/{total}{' ' + unit if unit else ''} [{self._elapsed()}]",
                highlight=False,
                markup=False,
            )

    def done(self) -> None:
        """The command's work is over: one closing line with the total time."""
        self.console.print(
            f"{self.command}: done in {self._elapsed()}", highlight=False, markup=False
        )


@contextmanager
def progress(command: str) -> Iterator[ProgressReporter]:
    """Show the progress of ``command`` on stderr while the block runs (see ``ProgressReporter``)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as RichProgress  # noqa: F811 - the runtime import of the TYPE_CHECKING name

    console = Console(stderr=True)
    if not console.is_terminal:
        reporter = ProgressReporter(command, console, None)
        yield reporter
        reporter.done()
        return
    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        reporter = ProgressReporter(command, bar.console, bar)
        yield reporter
    reporter.done()


def write_results(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` (parents created) and say where."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    typer.echo(f"figures written to {path}")
