"""``deploy canary|promote|rollback|status|kill-switch``: the KServe rollout from the command line.

Thin: each command parses options and calls ``checkout_recs.deploy``. Heavy imports (kubernetes,
mlflow) happen inside the command bodies.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_RUNTIME, fail, given_on_command_line, usage_error

deploy_app = typer.Typer(
    help="KServe rollout: canary ramp with guardrails, promote, rollback, kill switch.",
    no_args_is_help=True,
)

HostOpt = Annotated[
    str | None, typer.Option(help="Kubernetes API URL; default: in-cluster, then kubeconfig.")
]
NamespaceOpt = Annotated[str, typer.Option(help="Namespace of the InferenceService.")]
NameOpt = Annotated[str, typer.Option(help="InferenceService name.")]
TokenEnvOpt = Annotated[
    str, typer.Option(help="Environment variable holding a bearer token (never a flag).")
]
MlflowOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow registry: promote moves `champion`, rollback tags the version.",
    ),
]


def _registry(tracking_uri: str | None):  # noqa: ANN202
    from checkout_recs.tracking import MlflowAliases

    return MlflowAliases(tracking_uri) if tracking_uri else None


def _gmv_source(
    decisions_store: str | None,
    outcomes: Path | None,
    endpoint_url: str | None,  # noqa: ANN202
    min_sessions: int,
    explicit: bool = True,
):
    """The GMV-per-arm guardrail's source, or None without a store (or with only the environment's
    store and no --outcomes: the guardrail is then off, as without a store)."""
    if not decisions_store or (outcomes is None and not explicit):
        return None
    if outcomes is None:
        raise usage_error(
            "--artifact-root needs --outcomes (the folder of clicks, purchases, listings)"
        )
    from checkout_recs.deploy.attribution import DecisionLogGmv, folder_outcomes
    from checkout_recs.storage import open_store

    return DecisionLogGmv(
        open_store(decisions_store, endpoint_url),
        folder_outcomes(outcomes),
        min_sessions=min_sessions,
    )


def _steps(steps: str) -> tuple[int, ...]:
    """``--steps`` as percentages; a usage error when one is not an integer."""
    try:
        return tuple(int(x) for x in steps.split(","))
    except ValueError:
        raise usage_error(
            f"--steps wants comma-separated integer percentages, got {steps!r}"
        ) from None


def _api_and_ref(host: str | None, namespace: str, name: str, token_env: str):  # noqa: ANN202
    import os

    from checkout_recs.deploy.kube import IsvcRef, KubeApi

    return KubeApi(host=host, token=os.environ.get(token_env)), IsvcRef(
        name=name, namespace=namespace
    )


def _deploy_call(fn):  # noqa: ANN001, ANN202
    from checkout_recs.deploy.kube import DeployError

    try:
        return fn()
    except DeployError as exc:
        raise fail(str(exc)) from exc


@deploy_app.command("canary")
def deploy_canary(
    ctx: typer.Context,
    bundle_uri: Annotated[
        str, typer.Argument(help="Published bundle, e.g. s3://bucket/bundle/<version>.")
    ],
    prometheus_url: Annotated[
        str,
        typer.Option(
            "--prometheus-url",
            "--metrics-url",
            envvar="PROMETHEUS_URL",
            help="Prometheus base URL; the guardrails are PromQL queries on its /api/v1/query.",
        ),
    ],
    host: HostOpt = None,
    namespace: NamespaceOpt = "checkout-recs",
    name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
    steps: Annotated[
        str, typer.Option(help="Traffic steps in percent, comma-separated.")
    ] = "5,25,50,100",
    hold_s: Annotated[float, typer.Option(help="Healthy seconds needed at each step.")] = 600.0,
    poll_s: Annotated[float, typer.Option(help="Seconds between guardrail queries.")] = 30.0,
    prometheus_matchers: Annotated[
        str | None,
        typer.Option(
            help='Label matchers on every guardrail series (default: namespace="NAMESPACE").'
        ),
    ] = None,
    max_hold_s: Annotated[
        float, typer.Option(help="Longest wait for conclusive metrics per step.")
    ] = 1800.0,
    guardrails: Annotated[
        Path | None, typer.Option(help="GuardrailConfig as YAML or JSON.")
    ] = None,
    result_json: Annotated[Path | None, typer.Option(help="Write the RolloutResult here.")] = None,
    decisions_store: Annotated[
        str | None,
        typer.Option(
            "--artifact-root",
            envvar="CHECKOUT_RECS_ARTIFACT_ROOT",
            help="Artifact store root with the decision log (GMV per session per arm); also holds the bundles.",
        ),
    ] = None,
    outcomes: Annotated[
        Path | None,
        typer.Option(
            help="Folder of clicks/, purchases/, listings/ parquet (raw or ingested) joined to the decisions."
        ),
    ] = None,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(envvar="AWS_ENDPOINT_URL_S3", help="S3-compatible endpoint of the store."),
    ] = None,
    gmv_min_sessions: Annotated[
        int, typer.Option(help="Sessions per arm before GMV is judged.")
    ] = 200,
    mlflow_tracking_uri: MlflowOpt = None,
) -> None:
    """Ramp BUNDLE_URI 5 → 25 → 50 → 100% while guardrails hold; roll back by itself otherwise."""
    import yaml
    from rich.console import Console

    from checkout_recs.deploy.metrics import MetricsSpec, PrometheusQuerySource
    from checkout_recs.deploy.rollout import RampPlan, Rollout
    from checkout_recs.evaluation.experiments.guardrails import GuardrailConfig

    ramp_steps = _steps(steps)  # usage errors before anything is touched
    console = Console()
    api, ref = _api_and_ref(host, namespace, name, token_env)
    limits = GuardrailConfig.model_validate(
        yaml.safe_load(guardrails.read_text()) if guardrails else {}
    )
    plan = RampPlan(steps=ramp_steps, hold_s=hold_s, poll_s=poll_s, max_hold_s=max_hold_s)
    spec = MetricsSpec(
        matchers=f'namespace="{namespace}"' if prometheus_matchers is None else prometheus_matchers
    )
    rollout = Rollout(
        api,
        ref,
        PrometheusQuerySource(prometheus_url, spec),
        plan,
        limits,
        log=console.print,
        gmv=_gmv_source(
            decisions_store,
            outcomes,
            s3_endpoint_url,
            gmv_min_sessions,
            given_on_command_line(ctx, "decisions_store"),
        ),
        registry=_registry(mlflow_tracking_uri),
    )
    result = _deploy_call(lambda: rollout.run(bundle_uri))
    if result_json:
        result_json.write_text(result.model_dump_json(indent=2))
    color = {"promoted": "green", "rolled_back": "yellow", "failed": "red"}[result.outcome]
    console.print(f"[{color}]{result.outcome}[/]: {result.reason}")
    if result.outcome != "promoted":
        raise typer.Exit(code=EXIT_RUNTIME)


@deploy_app.command("promote")
def deploy_promote(
    host: HostOpt = None,
    namespace: NamespaceOpt = "checkout-recs",
    name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
    mlflow_tracking_uri: MlflowOpt = None,
    timeout_s: Annotated[float, typer.Option(help="Longest wait for the controller.")] = 600.0,
) -> None:
    """Send all traffic to the latest revision now (skips the remaining ramp); once the
    controller reports it, the MLflow `champion` alias moves to the bundle's model version."""
    from checkout_recs.deploy.rollout import RampPlan, Rollout

    api, ref = _api_and_ref(host, namespace, name, token_env)
    rollout = Rollout(
        api,
        ref,
        plan=RampPlan(ready_timeout_s=timeout_s),
        log=typer.echo,
        registry=_registry(mlflow_tracking_uri),
    )
    if _deploy_call(rollout.promote_confirmed) is None:
        raise fail(
            f"promoted {namespace}/{name} but the controller did not confirm within {timeout_s:.0f}s; "
            "registry unchanged"
        )
    typer.echo(
        f"promoted {namespace}/{name}: canaryTrafficPercent removed, all traffic on the latest revision"
    )


@deploy_app.command("rollback")
def deploy_rollback(
    reason: Annotated[
        str, typer.Option(help="Why (kept in an annotation on the InferenceService).")
    ],
    host: HostOpt = None,
    namespace: NamespaceOpt = "checkout-recs",
    name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
    mlflow_tracking_uri: MlflowOpt = None,
) -> None:
    """Send all traffic back to the previous rolled-out revision (the champion); the MLflow
    `champion` alias stays, the candidate's version is tagged rolled_back."""
    from checkout_recs.deploy.rollout import Rollout

    api, ref = _api_and_ref(host, namespace, name, token_env)
    _deploy_call(
        lambda: Rollout(api, ref, log=typer.echo, registry=_registry(mlflow_tracking_uri)).rollback(
            reason
        )
    )
    typer.echo(f"rolled back {namespace}/{name}: canaryTrafficPercent 0")


@deploy_app.command("status")
def deploy_status(
    host: HostOpt = None,
    namespace: NamespaceOpt = "checkout-recs",
    name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
) -> None:
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
    host: HostOpt = None,
    namespace: NamespaceOpt = "checkout-recs",
    name: NameOpt = "checkout-recs",
    token_env: TokenEnvOpt = "KUBE_TOKEN",
    configmap: Annotated[str, typer.Option(help="Policy ConfigMap name.")] = "checkout-recs-policy",
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="CHECKOUT_RECS_REDIS_URL",
            help="Redis serving reads; default: the loopback Redis.",
        ),
    ] = None,
    cluster: Annotated[
        bool, typer.Option(help="Also record it in the ConfigMap (needs an API server).")
    ] = True,
) -> None:
    """Kill switch: the Redis key serving reads, and the policy ConfigMap's kill_switch."""
    from checkout_recs.config import Settings
    from checkout_recs.deploy.kill_switch import set_kill_switch
    from checkout_recs.deploy.kube import IsvcRef

    if state not in ("on", "off"):
        raise usage_error(f"state must be 'on' or 'off', got {state!r}")
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url or Settings.from_env().redis_url, socket_timeout=2)
    api = _api_and_ref(host, namespace, name, token_env)[0] if cluster else None
    ref = IsvcRef(name=name, namespace=namespace, policy_configmap=configmap)
    result = set_kill_switch(api, ref, state == "on", who, reason, client)
    typer.echo(
        f"redis: {'written' if result.redis_written else 'FAILED: ' + str(result.redis_error)}"
    )
    if cluster:
        data = result.configmap or {}
        typer.echo(
            f"configmap: {result.configmap_error or 'kill_switch=' + data.get('kill_switch', '?')}"
        )
    if not result.effective or result.configmap_error:
        raise typer.Exit(code=EXIT_RUNTIME)
