"""MLflow: training runs (params, metrics, artifacts), the model registry with the aliases
``champion`` / ``challenger``, and the promotion gate.

The gate is plain Python (no MLflow needed): a challenger is promoted only if it does not lose
to the champion on any gated metric (NDCG@6, AUC, expected revenue) by more than a tolerance.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

#: Metrics the promotion gate compares; higher is better for each.
GATED_METRICS = ("ndcg@6", "auc_click", "auc_purchase", "expected_revenue@6")
MODEL_NAME = "checkout-recs-ranker"


class GateDecision(BaseModel):
    """Outcome of ``promotion_gate``."""

    promote: bool
    reasons: list[str] = Field(default_factory=list, description="One line per gated metric.")
    compared: dict[str, tuple[float, float]] = Field(default_factory=dict,
                                                     description="metric → (challenger, champion).")


def promotion_gate(challenger_metrics: dict[str, float], champion_metrics: dict[str, float] | None,
                   tolerance: float = 0.005, metrics: tuple[str, ...] = GATED_METRICS) -> GateDecision:
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
            reasons.append(f"{name}: {chal:.4f} < {floor:.4f} (champion {champ:.4f} − {tolerance:.1%})")
        else:
            reasons.append(f"{name}: {chal:.4f} ≥ {floor:.4f}")
    if not compared and ok:
        return GateDecision(promote=False, reasons=["no gated metric in common with the champion"])
    return GateDecision(promote=ok, reasons=reasons, compared=compared)


def _nan(x: float) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:250]
    return out


def log_training_run(tracking_uri: str, experiment: str, params: dict, metrics: dict[str, float],
                     artifact_dir: Path | None = None) -> str:
    """Log one run (flattened params, finite metrics, the artifact folder); returns the run id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params(_flatten(params))
        mlflow.log_metrics({_metric_key(k): float(v) for k, v in metrics.items()
                            if isinstance(v, int | float) and math.isfinite(v)})
        if artifact_dir is not None:
            mlflow.log_artifacts(str(artifact_dir), artifact_path="model")
        return run.info.run_id


def _metric_key(name: str) -> str:
    return name.replace("@", "_at_")


def register_run(tracking_uri: str, run_id: str, alias: str = "challenger",
                 name: str = MODEL_NAME) -> str:
    """Register the run's ``model`` artifacts as a new version of ``name`` and set ``alias``.

    Returns the new version number (as a string).
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    mv = client.create_model_version(name=name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def alias_metrics(tracking_uri: str, alias: str, name: str = MODEL_NAME) -> dict[str, float] | None:
    """Metrics of the run behind ``name@alias`` (keys as logged), or None when the alias is unset."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    if mv.run_id is None:
        return None
    data = client.get_run(mv.run_id).data.metrics
    return {k.replace("_at_", "@"): v for k, v in data.items()}


def promote_if_better(tracking_uri: str, run_id: str, challenger_metrics: dict[str, float],
                      tolerance: float = 0.005, name: str = MODEL_NAME) -> GateDecision:
    """Register ``run_id`` as challenger; move ``champion`` to it when the gate says so."""
    from mlflow import MlflowClient

    champion = alias_metrics(tracking_uri, "champion", name)
    version = register_run(tracking_uri, run_id, "challenger", name)
    decision = promotion_gate(challenger_metrics, champion, tolerance)
    if decision.promote:
        MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(name, "champion", version)
    return decision
