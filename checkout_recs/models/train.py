"""Stage ``train``: the multi-task ranker and the two-tower model from the working folders.

``train_all`` is what the CLI (``checkout-recs train``), the KFP component and the tests call.
It writes ``out_dir/ranker/`` (safetensors + config.json), ``out_dir/ranker.pt`` (TorchScript),
``out_dir/two_tower/`` and ``out_dir/metrics.json``, and logs to MLflow when a tracking URI is
given.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from checkout_recs.features.view_latest import latest_rows
from checkout_recs.models.inputs import listing_snapshot, read_table
from checkout_recs.models.metrics import auc
from checkout_recs.models.ranker import RankerConfig, RankerModel, train_ranker
from checkout_recs.models.student import StudentConfig, distill
from checkout_recs.models.two_tower import TwoTowerConfig, TwoTowerModel, train_two_tower
from checkout_recs.tracking import log_training_run


class TrainConfig(BaseModel):
    """Everything ``train_all`` needs besides its folders."""

    ranker: RankerConfig = Field(default_factory=RankerConfig)
    two_tower: TwoTowerConfig = Field(default_factory=TwoTowerConfig)
    validation_share: float = Field(
        default=0.2, ge=0, lt=1, description="Latest share of requests held out for metrics."
    )
    student: bool = Field(
        default=True, description="Also distil a student ranker (model/student/)."
    )
    student_cfg: StudentConfig = Field(default_factory=StudentConfig)
    tracking_uri: str | None = Field(default=None, description="MLflow URI; None: no logging.")
    experiment: str = Field(default="checkout-recs", description="MLflow experiment name.")
    seed: int = 7


class TrainSummary(BaseModel):
    """What ``train_all`` produced."""

    out_dir: str
    ranker_version: str
    two_tower_version: str
    metrics: dict[str, float]
    mlflow_run_id: str | None = None


def split_by_time(df: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the latest ``share`` of requests (whole requests, by ``event_timestamp``)."""
    if share <= 0 or "event_timestamp" not in df:
        return df, df.iloc[:0]
    key = "request_id" if "request_id" in df else None
    first = df.groupby(key)["event_timestamp"].min() if key else df["event_timestamp"]
    cut = first.quantile(1 - share) if len(first) else None
    if key:
        val_ids = first.index[first > cut]
        is_val = df[key].isin(val_ids)
    else:
        is_val = df["event_timestamp"] > cut
    return df[~is_val], df[is_val]


def ranker_metrics(model: RankerModel, val: pd.DataFrame) -> dict[str, float]:
    """AUC of the click head (all rows) and of P(purchase | click) (clicked rows) on ``val``."""
    if len(val) == 0:
        return {}
    p_click, p_cvr = model.predict_frame(val)
    clicked = val["clicked"].to_numpy()
    out = {
        "auc_click": auc(clicked, p_click),
        "auc_purchase": auc(val["purchased"].to_numpy(), p_click * p_cvr),
    }
    if clicked.sum() > 0:
        m = clicked > 0
        out["auc_cvr_given_click"] = auc(val["purchased"].to_numpy()[m], p_cvr[m])
    return out


def _load_interactions(labels_dir: Path) -> pd.DataFrame:
    inter = read_table(Path(labels_dir) / "interactions.parquet")
    return inter[["user_id", "listing_id", "event_timestamp"]]


def _users(features_dir: Path) -> pd.DataFrame | None:
    """Each user's newest row of the user view (by ``user_id``), read a key range at a time."""
    p = Path(features_dir) / "user.parquet"
    return latest_rows(p, "user_id") if p.exists() else None


def _merge_metrics(out_dir: Path, new: dict[str, float]) -> dict[str, float]:
    """Add ``new`` to ``out_dir/metrics.json`` (created when absent); return the merged dict."""
    path = Path(out_dir) / "metrics.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update({k: float(v) for k, v in new.items()})
    path.write_text(json.dumps(merged, indent=2))
    return merged


def _split_training_set(
    training_set_path: Path, cfg: TrainConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_by_time(read_table(Path(training_set_path)), cfg.validation_share)


def train_ranker_stage(
    training_set_path: Path, out_dir: Path, cfg: TrainConfig | None = None
) -> dict:
    """Train the multi-task ranker; write ``ranker/``, ``ranker.pt`` and ``metrics.json``.

    Parameters
    ----------
    training_set_path : parquet of labelled impressions with point-in-time features.
    out_dir : receives ``ranker/`` (safetensors + config.json), ``ranker.pt`` (TorchScript);
        its ``metrics.json`` gets the ranker metrics merged in.

    Returns
    -------
    dict with ``version`` (str) and ``metrics`` (name -> float: training metrics prefixed
    ``ranker_`` and validation AUCs). Raises ``FileNotFoundError``/``ValueError`` on a missing or
    empty training set.
    """
    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = _split_training_set(training_set_path, cfg)
    ranker = train_ranker(train, cfg.ranker)
    metrics = {f"ranker_{k}": float(v) for k, v in ranker.metrics.items()}
    metrics.update(ranker_metrics(ranker, val))
    ranker.metrics = metrics
    ranker.save(out_dir / "ranker")
    ranker.export_torchscript(out_dir / "ranker.pt")
    _merge_metrics(out_dir, metrics)
    return {"version": ranker.version, "metrics": metrics}


def distil_stage(model_dir: Path, training_set_path: Path, cfg: TrainConfig | None = None) -> dict:
    """Distil a student from ``model_dir/ranker``; write ``model_dir/student/``.

    Uses the same time split as ``train_ranker_stage`` (train part to distil, held-out part for
    the ``student_`` AUCs, merged into ``model_dir/metrics.json``).

    Returns
    -------
    dict with ``metrics`` (name -> float, prefixed ``student_``). Raises ``FileNotFoundError``
    when ``model_dir/ranker`` or the training set is missing.
    """
    cfg = cfg or TrainConfig()
    model_dir = Path(model_dir)
    ranker = RankerModel.load(model_dir / "ranker")
    train, val = _split_training_set(training_set_path, cfg)
    student = distill(ranker, train, cfg.student_cfg)
    st = ranker_metrics(student, val)
    student.metrics.update(st)
    student.save(model_dir / "student")
    metrics = {f"student_{k}": float(v) for k, v in st.items()}
    _merge_metrics(model_dir, metrics)
    return {"metrics": metrics}


def train_retrieval_stage(
    labels_dir: Path, features_dir: Path, out_dir: Path, cfg: TrainConfig | None = None
) -> dict:
    """Train the two-tower retrieval model; write ``out_dir/two_tower/`` and its metrics.

    Parameters
    ----------
    labels_dir : folder with ``interactions.parquet`` (training pairs).
    features_dir : folder with the feature views (``listing``, ``seller``, ``user``).
    out_dir : receives ``two_tower/``; ``metrics.json`` gets ``two_tower_*`` merged in.

    Returns
    -------
    dict with ``version`` (str) and ``metrics`` (name -> float, prefixed ``two_tower_``).
    """
    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot = listing_snapshot(features_dir, labels_dir=labels_dir)
    tt = train_two_tower(
        _load_interactions(labels_dir), snapshot, cfg.two_tower, _users(features_dir)
    )
    tt.save(out_dir / "two_tower")
    metrics = {f"two_tower_{k}": float(v) for k, v in tt.metrics.items()}
    _merge_metrics(out_dir, metrics)
    return {"version": tt.cfg.version, "metrics": metrics}


def merge_model_dirs(model_dirs: list[Path], out_dir: Path, cfg: TrainConfig | None = None) -> dict:
    """Copy the per-model stage folders into one ``train_all``-shaped folder and log it.

    ``metrics.json`` files are merged (later folders win on a clash). Logs one MLflow run when
    ``cfg.tracking_uri`` is set.

    Returns
    -------
    dict with ``metrics`` (merged) and ``mlflow_run_id`` (str, or None without tracking).
    """

    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    for d in map(Path, model_dirs):
        part = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").exists() else {}
        metrics.update(part)
        for child in d.iterdir():
            if child.name == "metrics.json":
                continue
            if child.is_dir():
                shutil.copytree(child, out_dir / child.name, dirs_exist_ok=True)
            else:
                shutil.copy2(child, out_dir / child.name)
    metrics = _merge_metrics(out_dir, metrics)
    return {"metrics": metrics, "mlflow_run_id": _log_run(cfg, metrics, out_dir)}


def _log_run(cfg: TrainConfig, metrics: dict[str, float], out_dir: Path) -> str | None:
    if not cfg.tracking_uri:
        return None

    return log_training_run(
        cfg.tracking_uri, cfg.experiment, cfg.model_dump(mode="json"), metrics, out_dir
    )


def train_all(
    training_set_path: Path,
    labels_dir: Path,
    features_dir: Path,
    out_dir: Path,
    cfg: TrainConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainSummary:
    """Train ranker, student and two-tower (the three stage functions); write artifacts and metrics.

    Parameters
    ----------
    training_set_path : parquet of impressions with labels (``clicked, purchased``) and
        point-in-time features (the features engineer's ``build_training_set``).
    labels_dir : folder with ``interactions.parquet`` (two-tower training pairs).
    features_dir : folder with the feature views (``listing``, ``seller``, ``user``).
    out_dir : receives ``ranker/``, ``ranker.pt``, ``student/`` (when ``cfg.student``),
        ``two_tower/``, ``metrics.json``.
    progress : called with each stage's name as it starts (ranker, student, two-tower, mlflow).

    Returns
    -------
    TrainSummary. Raises ``FileNotFoundError`` for a missing input and ``ValueError`` for an
    empty one.
    """
    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").unlink(missing_ok=True)
    say = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    say("ranker")
    rk = train_ranker_stage(training_set_path, out_dir, cfg)
    if cfg.student:
        say("student")
        distil_stage(out_dir, training_set_path, cfg)
    say("two-tower")
    tt = train_retrieval_stage(labels_dir, features_dir, out_dir, cfg)
    metrics = _merge_metrics(out_dir, {"train_all_seconds": time.perf_counter() - t0})
    if cfg.tracking_uri:
        say("mlflow")
    run_id = _log_run(cfg, metrics, out_dir)
    return TrainSummary(
        out_dir=str(out_dir),
        ranker_version=rk["version"],
        two_tower_version=tt["version"],
        metrics=metrics,
        mlflow_run_id=run_id,
    )


def load_models(model_dir: Path) -> tuple[RankerModel, TwoTowerModel]:
    """Load ``ranker/`` and ``two_tower/`` from a ``train_all`` output folder."""
    model_dir = Path(model_dir)
    return RankerModel.load(model_dir / "ranker"), TwoTowerModel.load(model_dir / "two_tower")


def seed_everything(seed: int) -> None:
    """Seed numpy and torch global generators (the trainers also seed their own)."""
    import torch  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)

    np.random.seed(seed)
    torch.manual_seed(seed)
