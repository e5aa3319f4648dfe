"""MLflow: training runs (params, metrics, artifacts), the model registry with the aliases
``champion`` / ``challenger``, and the promotion gate.

The gate is plain Python (no MLflow needed): a challenger passes only if it does not lose to the
champion on any gated metric (NDCG@6, AUC, expected revenue) by more than a tolerance. The
aliases follow the rollout, not the gate:

* gate passed → the new version gets ``challenger`` (and a ``bundle_uri`` tag once published);
* the canary ramp reaches 100 % (``deploy promote``) → ``champion`` moves to that version
  (``promote_bundle``);
* a rollback leaves ``champion`` where it is and tags the version ``rollout=rolled_back``.

So the next gate always compares with the model that actually serves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field

#: Metrics the promotion gate compares; higher is better for each.
GATED_METRICS = ("ndcg@6", "auc_click", "auc_purchase", "expected_revenue@6")
MODEL_NAME = "checkout-recs-ranker"


class GateDecision(BaseModel):
    """Outcome of ``promotion_gate``."""

    promote: bool
    reasons: list[str] = Field(default_factory=list, description="One line per gated metric.")
    compared: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="metric → (challenger, champion)."
    )


def promotion_gate(
    challenger_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    tolerance: float = 0.005,
    metrics: tuple[str, ...] = GATED_METRICS,
) -> GateDecision:
    """Decide whether a challenger may replace the champion.

    Parameters
    ----------
    challenger_metrics, champion_metrics : metric name → value (higher is better).
        No champion (None or empty): the challenger is promoted.
    tolerance : float
        Allowed relative loss per metric (0.005 = half a percent of the champion's value).

    Returns
    -------
    GateDecision; ``promote`` is False if any gated metric the champion has is missing or NaN
    for the challenger, or lower than ``champion · (1 − tolerance)``.
    """
    if not champion_metrics:
        return GateDecision(promote=True, reasons=["no champion: first model is promoted"])
    reasons, compared, ok = [], {}, True
    for name in metrics:
        if name not in champion_metrics or _nan(champion_metrics[name]):
            continue
        champ = float(champion_metrics[name])
        chal = challenger_metrics.get(name)
        if chal is None or _nan(chal):
            ok = False
            reasons.append(f"{name}: challenger has no value (champion {champ:.4f})")
            continue
        compared[name] = (float(chal), champ)
        floor = champ - abs(champ) * tolerance
        if chal < floor:
            ok = False
            reasons.append(
                f"{name}: {chal:.4f} < {floor:.4f} (champion {champ:.4f} − {tolerance:.1%})"
            )
        else:
            reasons.append(f"{name}: {chal:.4f} ≥ {floor:.4f}")
    if not compared and ok:
        return GateDecision(promote=False, reasons=["no gated metric in common with the champion"])
    return GateDecision(promote=ok, reasons=reasons, compared=compared)


def _nan(x: float) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def finite_metrics(values: Mapping[str, object]) -> dict[str, float]:
    """The numeric, finite entries of ``values`` as floats (what a metrics store can hold)."""
    return {
        k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)
    }


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:250]
    return out


def log_training_run(
    tracking_uri: str,
    experiment: str,
    params: dict,
    metrics: dict[str, float],
    artifact_dir: Path | None = None,
) -> str:
    """Log one run (flattened params, finite metrics, the artifact folder); returns the run id."""
    import mlflow  # lazy: mlflow costs seconds to import and only the tracking calls need it

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params(_flatten(params))
        mlflow.log_metrics({_metric_key(k): v for k, v in finite_metrics(metrics).items()})
        if artifact_dir is not None:
            mlflow.log_artifacts(str(artifact_dir), artifact_path="model")
        return run.info.run_id


def _metric_key(name: str) -> str:
    return name.replace("@", "_at_")


def register_run(
    tracking_uri: str, run_id: str, alias: str | None = None, name: str = MODEL_NAME
) -> str:
    """Register the run's ``model`` artifacts as a new version of ``name`` (and set ``alias``).

    Returns the new version number (as a string).
    """
    import mlflow  # lazy: mlflow costs seconds to import and only the tracking calls need it
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    mv = client.create_model_version(name=name, source=f"runs:/{run_id}/model", run_id=run_id)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def alias_version(
    tracking_uri: str, alias: str, name: str = MODEL_NAME
) -> tuple[str, str | None] | None:
    """``(version, run id)`` behind ``name@alias``, or None when the alias is unset."""
    import mlflow  # lazy: mlflow costs seconds to import and only the tracking calls need it
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    try:
        mv = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return str(mv.version), mv.run_id


def alias_metrics(tracking_uri: str, alias: str, name: str = MODEL_NAME) -> dict[str, float] | None:
    """Metrics of the run behind ``name@alias`` (keys as logged), or None when the alias is unset."""
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    found = alias_version(tracking_uri, alias, name)
    if found is None or found[1] is None:
        return None
    data = MlflowClient(tracking_uri=tracking_uri).get_run(found[1]).data.metrics
    return {k.replace("_at_", "@"): v for k, v in data.items()}


def champion_model_dir(tracking_uri: str, dest: Path, name: str = MODEL_NAME) -> Path | None:
    """Download the champion's ``model`` artifacts (``train_all`` layout) into ``dest``.

    Returns the local model folder, or None when there is no champion (or its run has no model).
    """
    import mlflow  # lazy: mlflow costs seconds to import and only the tracking calls need it

    found = alias_version(tracking_uri, "champion", name)
    if found is None or found[1] is None:
        return None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=found[1], artifact_path="model", dst_path=str(dest), tracking_uri=tracking_uri
        )
    except (mlflow.exceptions.MlflowException, OSError):
        return None
    return Path(path)


def set_challenger(
    tracking_uri: str,
    version: str,
    passed: bool,
    bundle_uri: str | None = None,
    name: str = MODEL_NAME,
) -> None:
    """Record the gate on ``version``: tag ``gate=passed|refused``; a pass also gets the
    ``challenger`` alias and, when given, the published ``bundle_uri`` as a tag (the rollout
    finds the version by it). ``champion`` is not touched."""
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_model_version_tag(name, version, "gate", "passed" if passed else "refused")
    if passed:
        client.set_registered_model_alias(name, "challenger", version)
        if bundle_uri:
            client.set_model_version_tag(name, version, "bundle_uri", bundle_uri)


def promote_if_better(
    tracking_uri: str,
    run_id: str,
    challenger_metrics: dict[str, float],
    tolerance: float = 0.005,
    name: str = MODEL_NAME,
    bundle_uri: str | None = None,
) -> GateDecision:
    """Register ``run_id`` and gate it against the champion run's logged metrics; a pass sets
    ``challenger`` (``set_challenger``). ``champion`` moves only when a rollout finishes
    (``promote_bundle``); the first model (no champion) passes."""
    champion = alias_metrics(tracking_uri, "champion", name)
    version = register_run(tracking_uri, run_id, None, name)
    decision = promotion_gate(challenger_metrics, champion, tolerance)
    set_challenger(tracking_uri, version, decision.promote, bundle_uri, name)
    return decision


def _version_of_bundle(client, name: str, bundle_uri: str) -> str | None:  # noqa: ANN001 - MlflowClient
    hits = [
        mv
        for mv in client.search_model_versions(f"name='{name}'")
        if (mv.tags or {}).get("bundle_uri") == bundle_uri
    ]
    return str(max(int(mv.version) for mv in hits)) if hits else None


def promote_bundle(tracking_uri: str, bundle_uri: str, name: str = MODEL_NAME) -> str:
    """The ramp of ``bundle_uri`` reached 100 %: ``champion`` moves to its version, the
    ``challenger`` alias is cleared when it pointed there. Returns a one-line note (also when no
    registered version carries the bundle: then nothing moves)."""
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    client = MlflowClient(tracking_uri=tracking_uri)
    version = _version_of_bundle(client, name, bundle_uri)
    if version is None:
        return f"no version of {name} is tagged with bundle {bundle_uri}: aliases unchanged"
    client.set_registered_model_alias(name, "champion", version)
    client.set_model_version_tag(name, version, "rollout", "promoted")
    if (alias_version(tracking_uri, "challenger", name) or ("",))[0] == version:
        client.delete_registered_model_alias(name, "challenger")
    return f"{name} version {version} is now champion"


def mark_rolled_back(
    tracking_uri: str, bundle_uri: str, reason: str, name: str = MODEL_NAME
) -> str:
    """The ramp of ``bundle_uri`` was rolled back: tag its version; ``champion`` is not touched."""
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    client = MlflowClient(tracking_uri=tracking_uri)
    version = _version_of_bundle(client, name, bundle_uri)
    if version is None:
        return f"no version of {name} is tagged with bundle {bundle_uri}: nothing tagged"
    client.set_model_version_tag(name, version, "rollout", "rolled_back")
    client.set_model_version_tag(name, version, "rollback_reason", reason[:250])
    return f"{name} version {version} tagged rolled_back; champion unchanged"


class MlflowAliases:
    """The rollout's registry hook: ``promoted`` → ``promote_bundle``, ``rolled_back`` →
    ``mark_rolled_back`` (see ``checkout_recs.deploy.rollout.RegistryHook``)."""

    def __init__(self, tracking_uri: str, name: str = MODEL_NAME) -> None:
        self.tracking_uri, self.name = tracking_uri, name

    def promoted(self, bundle_uri: str) -> str:
        """Move ``champion`` to the version that carries ``bundle_uri``; a note."""
        return promote_bundle(self.tracking_uri, bundle_uri, self.name)

    def rolled_back(self, bundle_uri: str, reason: str) -> str:
        """Tag the version that carries ``bundle_uri`` as rolled back; a note."""
        return mark_rolled_back(self.tracking_uri, bundle_uri, reason, self.name)
