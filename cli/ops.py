"""Operations commands: ``pipeline compile|run|submit``, ``manifests validate|sync-alerts``, and
(from ``ops_deploy``) ``deploy canary|promote|rollback|status|kill-switch``.

Thin: each command parses options and calls ``kfp_pipelines`` or ``checkout_recs.deploy``.
Heavy imports (kfp, kubernetes, kserve) happen inside the command bodies.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_RUNTIME, fail, usage_error

pipeline_app = typer.Typer(
    help="Kubeflow pipelines: compile, run locally (kfp.local), submit.", no_args_is_help=True
)
manifests_app = typer.Typer(
    help="Kubernetes manifests (kustomize): build and validate.", no_args_is_help=True
)


# ------------------------------------------------------------------------------------------- pipeline


@pipeline_app.command("compile")
def pipeline_compile(
    name: Annotated[
        str | None,
        typer.Argument(help="Pipeline to compile (training, index-refresh, monitoring)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Compile every pipeline.")] = False,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where to write; default kfp_pipelines/compiled/.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Do not write: exit 1 when a compiled file is stale.")
    ] = False,
) -> None:
    """Compile pipelines to KFP v2 YAML."""
    from kfp_pipelines.compile import compile_all, compile_pipeline, stale
    from kfp_pipelines.registry import PIPELINES

    names = sorted(PIPELINES) if all_ or name is None else [_pipeline_name(name)]
    if check:
        problems = [msg for msg in (stale(n) for n in names) if msg]
        for msg in problems:
            typer.echo(msg, err=True)
        raise typer.Exit(code=EXIT_RUNTIME if problems else 0)
    paths = (
        compile_all(out_dir)
        if all_ or name is None
        else [compile_pipeline(names[0], out_dir / f"{names[0]}.yaml" if out_dir else None)]
    )
    for path in paths:
        typer.echo(f"compiled {path}")


def _pipeline_name(name: str) -> str:
    from kfp_pipelines.registry import PIPELINES

    key = name.replace("-", "_")
    if key not in PIPELINES:
        raise usage_error(f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}")
    return key


def _parse_params(params: list[str] | None) -> dict[str, object]:
    import json

    out: dict[str, object] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise usage_error(f"--param wants KEY=VALUE, got {item!r}")
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = value
        out[key] = (
            value if isinstance(decoded, dict | list) else decoded
        )  # JSON documents stay strings
    return out


PARAMS_HELP = (
    "Parameter file, e.g. kfp_pipelines/params/{local,staging,production}.yaml: its section for "
    "this pipeline, validated (unknown keys and wrong types are errors). Options given explicitly "
    "(--param; for run also --artifact-root) override its values."
)


def _resolve_params(
    name: str, params_file: Path | None, overrides: dict[str, object]
) -> dict[str, object]:
    """The --params file's section for ``name`` overridden by ``overrides``; parameters that fail
    validation are a usage error (exit 2) with the validation message (``cli.common``: the file and
    --param are validated together, as the invocation). Without a file, ``overrides`` unchanged."""
    from kfp_pipelines.params import ParamsError, resolve_params

    try:
        return resolve_params(name, params_file, overrides)
    except ParamsError as exc:
        raise usage_error(str(exc)) from exc


@pipeline_app.command("run")
def pipeline_run(
    name: Annotated[
        str, typer.Argument(help="Pipeline to run (training, index-refresh, monitoring).")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for the run: pipeline_root/, artifacts/, run.json.")
    ] = Path("runs/local"),
    local: Annotated[
        bool, typer.Option("--local", help="Run on this machine with kfp.local (required).")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="Pipeline parameter KEY=VALUE (repeat); JSON values. Overrides --params."
        ),
    ] = None,
    artifact_root: Annotated[
        str | None,
        typer.Option(
            envvar="CHECKOUT_RECS_ARTIFACT_ROOT",
            help="Artifact store root; default OUT/artifacts. Overrides --params.",
        ),
    ] = None,
    params: Annotated[Path | None, typer.Option("--params", help=PARAMS_HELP)] = None,
) -> None:
    """Run a pipeline end to end on this machine (kfp.local SubprocessRunner, no venv).

    Precedence: local defaults (paths under OUT) < the --params file's section < --param and
    --artifact-root given explicitly."""
    from rich import print as rprint

    from kfp_pipelines.local import run_local

    if not local:
        raise usage_error(
            "only --local runs here; use `checkout-recs pipeline submit` for a cluster"
        )
    key = _pipeline_name(name)
    overrides = _parse_params(param)
    if artifact_root:
        overrides["artifact_root"] = artifact_root
    args = _resolve_params(key, params, overrides)
    try:
        summary = run_local(key, out, args)
    except RuntimeError as exc:
        raise fail(f"pipeline {name} failed: {exc}") from exc
    rprint(summary)


@pipeline_app.command("submit")
def pipeline_submit(
    name: Annotated[
        str, typer.Argument(help="Pipeline to submit (training, index-refresh, monitoring).")
    ],
    host: Annotated[
        str,
        typer.Option(help="Kubeflow Pipelines API URL (e.g. http://ml-pipeline.kubeflow:8888)."),
    ],
    schedule: Annotated[
        str | None,
        typer.Option(help="Six-field cron for a recurring run; 'default' = the recommended one."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="Pipeline parameter KEY=VALUE (repeat); JSON values. Overrides --params."
        ),
    ] = None,
    experiment: Annotated[str, typer.Option(help="KFP experiment name.")] = "checkout-recs",
    namespace: Annotated[
        str | None, typer.Option(help="Kubeflow profile namespace (multi-user).")
    ] = None,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding a bearer token.")
    ] = "KFP_TOKEN",
    params: Annotated[Path | None, typer.Option("--params", help=PARAMS_HELP)] = None,
) -> None:
    """Submit the compiled pipeline: one run, or a recurring run with --schedule.

    Precedence: the pipeline's defaults < the --params file's section < --param given explicitly.
    Task pods get env and secrets from the checkout-recs-pipeline-env ConfigMap and the
    checkout-recs-pipeline-secrets Secret (compiled in) and run as checkout-recs-pipeline."""
    import os

    from kfp_pipelines.submit import submit

    key = _pipeline_name(name)
    arguments = _resolve_params(key, params, _parse_params(param))
    try:
        result = submit(
            key, host, arguments, schedule, experiment, namespace, os.environ.get(token_env)
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    typer.echo(result.model_dump_json())


# ------------------------------------------------------------------------------------------ manifests


@manifests_app.command("validate")
def manifests_validate(
    manifests_dir: Annotated[
        Path, typer.Option(help="Folder with base/, overlays/, training/.")
    ] = Path("manifests"),
    crd_dir: Annotated[
        Path,
        typer.Option(
            help="Real KServe CRDs; when absent the kserve SDK schema is used and said so."
        ),
    ] = Path("../shared/conformance/kserve-crds"),
    k8s_version: Annotated[
        str, typer.Option(help="Kubernetes version of the core schemas.")
    ] = "1.37.0",
    require_crds: Annotated[
        bool, typer.Option(help="Fail when the real CRDs are absent instead of falling back.")
    ] = False,
) -> None:
    """Build every overlay with the pinned kubectl and validate it (core schemas, CRDs, semantics);
    check the Dockerfiles next to it (``docker/*.Dockerfile``, static checks: no runtime here)."""
    from rich.console import Console
    from rich.table import Table

    from checkout_recs.deploy import dockerfiles
    from checkout_recs.deploy.validation import load_schemas, validate_all
    from cli.kserve_schema import kserve_sdk_schemas

    console = Console()
    try:
        schemas, note = load_schemas(
            manifests_dir, crd_dir, require_crds, fallback=kserve_sdk_schemas
        )
    except FileNotFoundError as exc:
        raise fail(str(exc)) from exc
    if note:
        console.print(f"[yellow]note:[/] {note}")
    reports = validate_all(manifests_dir, schemas, k8s_version)
    table = Table("target", "resources", "findings", "InferenceService schema")
    for r in reports:
        isvc = next(
            (v for k, v in r.schema_sources.items() if k.startswith("InferenceService/")), "-"
        )
        table.add_row(r.target, str(len(r.resources)), str(len(r.findings)), isvc)
    console.print(table)
    bad: list[object] = [f for r in reports for f in r.findings]
    for r in reports:
        for f in r.findings:
            console.print(f"[red]FAIL[/] {r.target} {f}")
    repo = manifests_dir.resolve().parent
    images = sorted((repo / "docker").glob("*.Dockerfile"))
    for path in images:
        for problem in dockerfiles.check(path, repo):
            bad.append(problem)
            console.print(f"[red]FAIL[/] docker/{path.name} {problem}")
    if bad or not reports:
        raise typer.Exit(code=EXIT_RUNTIME)
    console.print(
        f"[green]ok[/]: {len(reports)} targets valid; {len(images)} Dockerfiles pass the static checks "
        "(static checks only; `make images` builds them with podman)"
    )


@manifests_app.command("sync-alerts")
def manifests_sync_alerts(
    repo: Annotated[Path, typer.Option(help="Repository root.")] = Path("."),
    runbook_base: Annotated[
        str | None,
        typer.Option(
            envvar="CHECKOUT_RECS_RUNBOOK_BASE",
            help="Base URL the alerts' runbook links are made absolute under (default: the repository's docs).",
        ),
    ] = None,
) -> None:
    """Render monitoring/alerts/ into the base as PrometheusRules; copy monitoring/dashboards/ there too."""
    from checkout_recs.deploy.alerts import SOURCE, sync_alerts
    from checkout_recs.deploy.dashboards import sync_dashboards

    written = sync_alerts(repo, runbook_base)
    if not written:
        raise fail(f"{repo / SOURCE.parent} holds no rule file (monitoring owns them)")
    for path in [*written, *sync_dashboards(repo)]:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the ``pipeline``, ``deploy`` and ``manifests`` command groups to ``app``."""
    app.add_typer(pipeline_app, name="pipeline")
    from cli.ops_deploy import deploy_app

    app.add_typer(deploy_app, name="deploy")
    app.add_typer(manifests_app, name="manifests")
