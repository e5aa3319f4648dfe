"""Run a pipeline on this machine with ``kfp.local`` (SubprocessRunner, no venv).

Layout under ``out_dir`` (mirrors the S3 layout of a cluster run)::

    pipeline_root/<pipeline>-<timestamp>/<task>/<output>   every task's artifacts (KFP's layout)
    artifacts/<kind>/<version>/ + LATEST                    published artifacts (storage.py)
    artifacts/feast/, artifacts/mlflow.db, artifacts/mlruns/  Feast registry/online store, MLflow
    run.json                                                arguments, outputs, seconds

``use_venv=False`` runs each component with this interpreter; no component lists packages, so
nothing is installed.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from kfp_pipelines.registry import get


def local_defaults(name: str, out_dir: Path) -> dict[str, Any]:
    """Arguments that keep a local run inside ``out_dir`` (artifact store, MLflow, Feast)."""
    artifacts = (Path(out_dir) / "artifacts").resolve()
    if (
        name == "training"
    ):  # pandas PIT join: same rows as Feast's retrieval, minutes faster on 2 cores
        return {
            "artifact_root": str(artifacts),
            "mlflow_tracking_uri": f"sqlite:///{artifacts}/mlflow.db",
            "feast_work_dir": str(artifacts / "feast"),
            "training_join": "pandas",
            # local runs replay past (or simulated) logs: judge feature SLAs at the data's end
            "feature_freshness_at": "data",
        }
    return {"artifact_root": str(artifacts)}


def _mlflow_artifacts_under(tracking_uri: str, folder: Path) -> None:
    """Create the training experiment with its artifact location in ``folder``: with a SQLite
    tracking URI MLflow would otherwise put run artifacts in ``./mlruns`` of the working directory."""
    from mlflow import (
        MlflowClient,  # lazy: mlflow costs seconds to import and only the tracking calls need it
    )

    from checkout_recs.models.train import (
        TrainConfig,
    )  # lazy: keeps scipy, torch out of this module's import

    client = MlflowClient(tracking_uri=tracking_uri)
    name = TrainConfig().experiment
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=folder.resolve().as_uri())


def run_local(name: str, out_dir: Path, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run pipeline ``name`` locally; returns the run summary also written to ``out_dir/run.json``.

    Parameters
    ----------
    name : str
        A key of ``kfp_pipelines.registry.PIPELINES``.
    out_dir : Path
        Everything the run writes goes under it (see module docstring).
    arguments : dict, optional
        Pipeline parameters; they override ``local_defaults``.

    Returns
    -------
    dict
        ``{"pipeline", "arguments", "output", "seconds", "pipeline_root"}``. A failing task
        raises ``RuntimeError`` (kfp.local's ``raise_on_error``) after its logs were printed.
    """
    from kfp import local  # lazy: kfp costs ~1 s and only pipeline compile/run/submit need it

    out_dir = Path(out_dir).resolve()
    (out_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    args = {**local_defaults(name, out_dir), **(arguments or {})}
    if str(args.get("mlflow_tracking_uri", "")).startswith("sqlite:"):
        _mlflow_artifacts_under(args["mlflow_tracking_uri"], out_dir / "artifacts" / "mlruns")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(out_dir / "pipeline_root"),
        workspace_root=str(out_dir / "workspace"),
        raise_on_error=True,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # our image is not named *python*: kfp.local warns, harmlessly
        warnings.filterwarnings(
            "ignore", message=".*non-Python base image.*", category=RuntimeWarning
        )
        task = get(name).load()(**args)
    outputs = getattr(task, "outputs", {}) or {}
    summary = {
        "pipeline": name,
        "arguments": args,
        "output": outputs.get("Output"),
        "seconds": round(time.perf_counter() - t0, 1),
        "pipeline_root": str(out_dir / "pipeline_root"),
    }
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
