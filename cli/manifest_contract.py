"""Entry points of the containers in ``manifests/``, for the manifest <-> code contract.

``load_entry_point(module)`` imports ``module`` and reads what it declares: ``build_parser()``
(required: the flags it accepts), ``ENV_VARS`` (the environment it reads; default none) and
``missing_settings(args, env)`` (what a cluster deployment lacks; optional). The core check is
``checkout_recs.deploy.entrypoints.check_contract``; ``contract_findings`` runs it on one build.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

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
    return EntryPoint(
        parse=_strict(build),
        env=frozenset(getattr(mod, "ENV_VARS", ())),
        missing=getattr(mod, "missing_settings", None),
    )


def contract_findings(docs: list[dict[str, Any]], docker_dir: Path = DOCKER_DIR) -> list[Finding]:
    """Contract findings of one rendered build (``check_contract`` with the real entry points)."""
    return check_contract(docs, image_entrypoints(docker_dir), load_entry_point)


#: Flags a local launcher owns (``inference.launch``: ports, host, bundle path, predictor address).
LAUNCHER_FLAGS = (
    "--bundle",
    "--host",
    "--http_port",
    "--grpc_port",
    "--model_name",
    "--predictor_host",
    "--predictor_url",
    "--predictor_grpc",
    "--workers",
)


def manifest_transformer(
    overlay: Path, docker_dir: Path = DOCKER_DIR
) -> tuple[list[str], dict[str, str]]:
    """The transformer's arguments (after ``-m inference.transformer``, KServe's included) and its
    env (literal values; Secrets as ``<secret:...>``) in the rendered ``overlay``."""
    from checkout_recs.deploy.entrypoints import invocations
    from checkout_recs.deploy.manifests import build

    for inv in invocations(build(overlay), image_entrypoints(docker_dir)):
        if inv.module == "inference.transformer":
            return inv.module_args, dict(inv.env)
    raise LookupError(f"no inference.transformer container in {overlay}")


def local_transformer_flags(
    overlay: Path, overrides: dict[str, str], docker_dir: Path = DOCKER_DIR
) -> list[str]:
    """The overlay's transformer configuration as flags for a local run (``inference.launch``).

    Its arguments minus ``LAUNCHER_FLAGS``, then each ``ServingSettings`` variable of its env as the
    flag of the same field (secrets, the deployment kind and the policy folder left out), then
    ``overrides`` (``{"--flag": value}``: the local endpoints, e.g. Redis and the decision log root)
    replacing what the overlay says. The result parses with ``inference.transformer.build_parser``.
    """
    from checkout_recs.serving.settings import ENV, SECRET_FIELDS

    args, env = manifest_transformer(overlay, docker_dir)
    flags: dict[str, str | None] = {}
    for i, a in enumerate(args):
        if not a.startswith("--"):
            continue  # the value of the flag before it
        name, eq, value = a.partition("=")
        after = args[i + 1] if i + 1 < len(args) else None
        flags[name] = (
            value if eq else (after if after is not None and not after.startswith("--") else None)
        )
    for field, var in ENV.items():
        if var in env and field not in SECRET_FIELDS and field not in ("deployment", "policy_dir"):
            flags[f"--{field}"] = env[var]
    flags.update(overrides)
    out: list[str] = []
    for flag, given in flags.items():
        if flag in LAUNCHER_FLAGS:
            continue
        out.append(flag)
        if given is not None:
            out.append(given)
    return out
