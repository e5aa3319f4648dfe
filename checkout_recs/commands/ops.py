"""Operations commands: ``pipeline compile|run|submit``, ``deploy canary|promote|rollback|status|
kill-switch`` and ``manifests validate``.

Thin: each command parses options and calls ``kfp_pipelines`` or ``checkout_recs.deploy``.
Heavy imports (kfp, kubernetes, kserve) happen inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

pipeline_app = typer.Typer(help="Kubeflow pipelines: compile, run locally (kfp.local), submit.", no_args_is_help=True)
deploy_app = typer.Typer(help="KServe rollout: canary ramp with guardrails, promote, rollback, kill switch.",
                         no_args_is_help=True)
manifests_app = typer.Typer(help="Kubernetes manifests (kustomize): build and validate.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=code)


# ------------------------------------------------------------------------------------------- pipeline


@pipeline_app.command("compile")
def pipeline_compile(
    name: Annotated[str | None, typer.Argument(help="Pipeline to compile (training, index-refresh, monitoring).")]
    = None,
    all_: Annotated[bool, typer.Option("--all", help="Compile every pipeline.")] = False,
    out_dir: Annotated[Path | None, typer.Option(help="Where to write; default kfp_pipelines/compiled/.")] = None,
    check: Annotated[bool, typer.Option(help="Do not write: exit 1 when a compiled file is stale.")] = False,
) -> None:
    """Compile pipelines to KFP v2 YAML."""
    from kfp_pipelines.compile import compile_all, compile_pipeline, stale
    from kfp_pipelines.registry import PIPELINES

    names = sorted(PIPELINES) if all_ or name is None else [_pipeline_name(name)]
    if check:
        problems = [msg for msg in (stale(n) for n in names) if msg]
        for msg in problems:
            typer.echo(msg, err=True)
        raise typer.Exit(code=1 if problems else 0)
    paths = compile_all(out_dir) if all_ or name is None else [
        compile_pipeline(names[0], out_dir / f"{names[0]}.yaml" if out_dir else None)]
    for path in paths:
        typer.echo(f"compiled {path}")


def _pipeline_name(name: str) -> str:
    from kfp_pipelines.registry import PIPELINES

    key = name.replace("-", "_")
    if key not in PIPELINES:
        raise _fail(f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}")
    return key


def _parse_params(params: list[str] | None) -> dict[str, object]:
    import json

    out: dict[str, object] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise _fail(f"--param wants KEY=VALUE, got {item!r}")
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = value
        out[key] = value if isinstance(decoded, dict | list) else decoded  # JSON documents stay strings
    return out


@pipeline_app.command("run")
def pipeline_run(
    name: Annotated[str, typer.Argument(help="Pipeline to run (training, index-refresh, monitoring).")],
    out: Annotated[Path, typer.Option(help="Folder for the run: pipeline_root/, artifacts/, run.json.")] = Path(
        "runs/local"),
    local: Annotated[bool, typer.Option("--local", help="Run on this machine with kfp.local (required).")] = False,
    param: Annotated[list[str] | None, typer.Option(help="Pipeline parameter KEY=VALUE (repeat); JSON values.")]
    = None,
    artifact_root: Annotated[str | None, typer.Option(help="Artifact store root; default OUT/artifacts.")] = None,
) -> None:
    """Run a pipeline end to end on this machine (kfp.local SubprocessRunner, no venv)."""
    from rich import print as rprint

    from kfp_pipelines.local import run_local

    if not local:
        raise _fail("only --local runs here; use `checkout-recs pipeline submit` for a cluster")
    args = _parse_params(param)
    if artifact_root:
        args["artifact_root"] = artifact_root
    try:
        summary = run_local(_pipeline_name(name), out, args)
    except RuntimeError as exc:
        raise _fail(f"pipeline {name} failed: {exc}", code=1) from exc
    rprint(summary)


@pipeline_app.command("submit")
def pipeline_submit(
    name: Annotated[str, typer.Argument(help="Pipeline to submit (training, index-refresh, monitoring).")],
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines API URL (e.g. http://ml-pipeline.kubeflow:8888).")],
    schedule: Annotated[
        str | None, typer.Option(help="Six-field cron for a recurring run; 'default' = the recommended one.")
    ] = None,
    param: Annotated[list[str] | None, typer.Option(help="Pipeline parameter KEY=VALUE (repeat).")] = None,
    experiment: Annotated[str, typer.Option(help="KFP experiment name.")] = "checkout-recs",
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace (multi-user).")] = None,
    token_env: Annotated[str, typer.Option(help="Environment variable holding a bearer token.")] = "KFP_TOKEN",
) -> None:
    """Submit the compiled pipeline: one run, or a recurring run with --schedule."""
    import os

    from kfp_pipelines.submit import submit

    try:
        result = submit(_pipeline_name(name), host, _parse_params(param), schedule, experiment, namespace,
                        os.environ.get(token_env))
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(result.model_dump_json())


# --------------------------------------------------------------------------------------------- deploy

HostOpt = Annotated[str | None, typer.Option(help="Kubernetes API URL; default: in-cluster, then kubeconfig.")]
NamespaceOpt = Annotated[str, typer.Option(help="Namespace of the InferenceService.")]
NameOpt = Annotated[str, typer.Option(help="InferenceService name.")]
TokenEnvOpt = Annotated[str, typer.Option(help="Environment variable holding a bearer token (never a flag).")]


def _api_and_ref(host: str | None, namespace: str, name: str, token_env: str):  # noqa: ANN202
    import os

    from checkout_recs.deploy.kube import IsvcRef, KubeApi

    return KubeApi(host=host, token=os.environ.get(token_env)), IsvcRef(name=name, namespace=namespace)


def _deploy_call(fn):  # noqa: ANN001, ANN202
    from checkout_recs.deploy.kube import DeployError

    try:
        return fn()
    except DeployError as exc:
        raise _fail(str(exc), code=1) from exc


@deploy_app.command("canary")
def deploy_canary(
    bundle_uri: Annotated[str, typer.Argument(help="Published bundle, e.g. s3://bucket/bundle/<version>.")],
    metrics_url: Annotated[str, typer.Option(help="Prometheus text endpoint (/federate or /metrics).")],
    host: HostOpt = None,
    namespace: NamespaceOpt = "checkout-recs",
    name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
    steps: Annotated[str, typer.Option(help="Traffic steps in percent, comma-separated.")] = "5,25,50,100",
    hold_s: Annotated[float, typer.Option(help="Healthy seconds needed at each step.")] = 600.0,
    poll_s: Annotated[float, typer.Option(help="Seconds between metric scrapes.")] = 30.0,
    max_hold_s: Annotated[float, typer.Option(help="Longest wait for conclusive metrics per step.")] = 1800.0,
    guardrails: Annotated[Path | None, typer.Option(help="GuardrailConfig as YAML or JSON.")] = None,
    result_json: Annotated[Path | None, typer.Option(help="Write the RolloutResult here.")] = None,
) -> None:
    """Ramp BUNDLE_URI 5 → 25 → 50 → 100% while guardrails hold; roll back by itself otherwise."""
    import yaml
    from rich.console import Console

    from checkout_recs.deploy.metrics import PrometheusTextSource
    from checkout_recs.deploy.rollout import RampPlan, Rollout
    from checkout_recs.evaluation.guardrails import GuardrailConfig

    console = Console()
    api, ref = _api_and_ref(host, namespace, name, token_env)
    limits = GuardrailConfig.model_validate(yaml.safe_load(guardrails.read_text()) if guardrails else {})
    plan = RampPlan(steps=tuple(int(x) for x in steps.split(",")), hold_s=hold_s, poll_s=poll_s,
                    max_hold_s=max_hold_s)
    rollout = Rollout(api, ref, PrometheusTextSource(metrics_url), plan, limits, log=console.print)
    result = _deploy_call(lambda: rollout.run(bundle_uri))
    if result_json:
        result_json.write_text(result.model_dump_json(indent=2))
    color = {"promoted": "green", "rolled_back": "yellow", "failed": "red"}[result.outcome]
    console.print(f"[{color}]{result.outcome}[/]: {result.reason}")
    if result.outcome != "promoted":
        raise typer.Exit(code=1)


@deploy_app.command("promote")
def deploy_promote(host: HostOpt = None, namespace: NamespaceOpt = "checkout-recs",
                   name: NameOpt = "checkout-recs", token_env: TokenEnvOpt = "KUBE_TOKEN") -> None:
    """Send all traffic to the latest revision now (skips the remaining ramp)."""
    from checkout_recs.deploy.rollout import Rollout

    api, ref = _api_and_ref(host, namespace, name, token_env)
    _deploy_call(lambda: Rollout(api, ref).promote())
    typer.echo(f"promoted {namespace}/{name}: canaryTrafficPercent removed")


@deploy_app.command("rollback")
def deploy_rollback(
    reason: Annotated[str, typer.Option(help="Why (kept in an annotation on the InferenceService).")],
    host: HostOpt = None, namespace: NamespaceOpt = "checkout-recs", name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
) -> None:
    """Send all traffic back to the previous rolled-out revision (the champion)."""
    from checkout_recs.deploy.rollout import Rollout

    api, ref = _api_and_ref(host, namespace, name, token_env)
    _deploy_call(lambda: Rollout(api, ref).rollback(reason))
    typer.echo(f"rolled back {namespace}/{name}: canaryTrafficPercent 0")


@deploy_app.command("status")
def deploy_status(host: HostOpt = None, namespace: NamespaceOpt = "checkout-recs",
                  name: NameOpt = "checkout-recs", token_env: TokenEnvOpt = "KUBE_TOKEN") -> None:
    """Traffic split per component, bundle URI and rollout annotations."""
    from rich import print as rprint

    from checkout_recs.deploy.rollout import Rollout

    api, ref = _api_and_ref(host, namespace, name, token_env)
    rprint(_deploy_call(lambda: Rollout(api, ref).status()))


@deploy_app.command("kill-switch")
def deploy_kill_switch(
    state: Annotated[str, typer.Argument(help="'on' (serve the fallback) or 'off'.")],
    who: Annotated[str, typer.Option(help="Who flips it (kept with the switch).")],
    reason: Annotated[str, typer.Option(help="Why (kept with the switch).")],
    host: HostOpt = None, namespace: NamespaceOpt = "checkout-recs", name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
    configmap: Annotated[str, typer.Option(help="Policy ConfigMap name.")] = "checkout-recs-policy",
    redis_url: Annotated[str | None, typer.Option(help="Redis serving reads; default from settings.")] = None,
    cluster: Annotated[bool, typer.Option(help="Also record it in the ConfigMap (needs an API server).")] = True,
) -> None:
    """Kill switch: the Redis key serving reads, and the policy ConfigMap's kill_switch."""
    from checkout_recs.config import Settings
    from checkout_recs.deploy.kill_switch import set_kill_switch
    from checkout_recs.deploy.kube import IsvcRef

    if state not in ("on", "off"):
        raise _fail(f"state must be 'on' or 'off', got {state!r}")
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url or Settings.from_env().redis_url, socket_timeout=2)
    api = _api_and_ref(host, namespace, name, token_env)[0] if cluster else None
    ref = IsvcRef(name=name, namespace=namespace, policy_configmap=configmap)
    result = set_kill_switch(api, ref, state == "on", who, reason, client)
    typer.echo(f"redis: {'written' if result.redis_written else 'FAILED: ' + str(result.redis_error)}")
    if cluster:
        data = result.configmap or {}
        typer.echo(f"configmap: {result.configmap_error or 'kill_switch=' + data.get('kill_switch', '?')}")
    if not result.effective or result.configmap_error:
        raise typer.Exit(code=1)


# ------------------------------------------------------------------------------------------ manifests


@manifests_app.command("validate")
def manifests_validate(
    manifests_dir: Annotated[Path, typer.Option(help="Folder with base/, overlays/, training/.")] = Path("manifests"),
    crd_dir: Annotated[
        Path, typer.Option(help="Real KServe CRDs; when absent the kserve SDK schema is used and said so.")
    ] = Path("../shared/conformance/kserve-crds"),
    k8s_version: Annotated[str, typer.Option(help="Kubernetes version of the core schemas.")] = "1.37.0",
    require_crds: Annotated[
        bool, typer.Option(help="Fail when the real CRDs are absent instead of falling back.")
    ] = False,
) -> None:
    """Build every overlay with the pinned kubectl and validate it (core schemas, CRDs, semantics)."""
    from rich.console import Console
    from rich.table import Table

    from checkout_recs.deploy.validation import load_schemas, validate_all

    console = Console()
    try:
        schemas, note = load_schemas(manifests_dir, crd_dir, require_crds)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from exc
    if note:
        console.print(f"[yellow]note:[/] {note}")
    reports = validate_all(manifests_dir, schemas, k8s_version)
    table = Table("target", "resources", "findings", "InferenceService schema")
    for r in reports:
        isvc = next((v for k, v in r.schema_sources.items() if k.startswith("InferenceService/")), "-")
        table.add_row(r.target, str(len(r.resources)), str(len(r.findings)), isvc)
    console.print(table)
    bad = [f for r in reports for f in r.findings]
    for r in reports:
        for f in r.findings:
            console.print(f"[red]FAIL[/] {r.target} {f}")
    if bad or not reports:
        raise typer.Exit(code=1)
    console.print(f"[green]ok[/]: {len(reports)} targets valid")


@manifests_app.command("sync-alerts")
def manifests_sync_alerts(
    repo: Annotated[Path, typer.Option(help="Repository root.")] = Path("."),
) -> None:
    """Render monitoring/alerts/prometheus-rules.yaml into the base as a PrometheusRule."""
    from checkout_recs.deploy.alerts import SOURCE, sync_alerts

    written = sync_alerts(repo)
    if written is None:
        raise _fail(f"{repo / SOURCE} does not exist (monitoring owns it)")
    typer.echo(f"wrote {written}")


def register(app: typer.Typer) -> None:
    """Add the ``pipeline``, ``deploy`` and ``manifests`` command groups to ``app``."""
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(deploy_app, name="deploy")
    app.add_typer(manifests_app, name="manifests")
