"""Entry points of the containers in ``manifests/``, for the manifest <-> code contract.

``load_entry_point(module)`` imports ``module`` and reads what it declares: ``build_parser()``
(required: the flags it accepts), ``ENV_VARS`` (the environment it reads; default none) and
``missing_settings(args, env)`` (what a cluster deployment lacks; optional). The core check is
``checkout_recs.deploy.entrypoints.check_contract``; ``contract_findings`` runs it on one build.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from checkout_recs.deploy.entrypoints import EntryPoint, check_contract, image_entrypoints
from checkout_recs.deploy.semantics import Finding

DOCKER_DIR = Path(__file__).resolve().parents[1] / "docker"


def _strict(build: Callable[[], Any]) -> Callable[[list[str]], Any]:
    """``argv -> namespace`` that raises ValueError with argparse's message instead of exiting."""
    def parse(argv: list[str]) -> Any:
        parser = build()

        def error(message: str) -> NoReturn:
            raise ValueError(message)

        parser.error = error  # argparse reports every parse failure through error()
        return parser.parse_args(argv)
    return parse


@cache
def load_entry_point(module: str) -> EntryPoint:
    """The entry point ``module`` declares; LookupError when it has no ``build_parser``."""
    mod = importlib.import_module(module)
    build = getattr(mod, "build_parser", None)
    if build is None:
        raise LookupError(f"{module} has no build_parser(): its flags cannot be checked")
    return EntryPoint(parse=_strict(build), env=frozenset(getattr(mod, "ENV_VARS", ())),
                      missing=getattr(mod, "missing_settings", None))


def contract_findings(docs: list[dict[str, Any]], docker_dir: Path = DOCKER_DIR) -> list[Finding]:
    """Contract findings of one rendered build (``check_contract`` with the real entry points)."""
    return check_contract(docs, image_entrypoints(docker_dir), load_entry_point)
