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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pydantic import BaseModel, Field

from checkout_recs.features.view_latest import latest_rows
from checkout_recs.models.distributed import rank_world, shard_mask
from checkout_recs.models.inputs import iter_listing_snapshot, listing_snapshot, read_table
from checkout_recs.models.metrics import auc
from checkout_recs.models.ranker import RankerConfig, RankerModel, train_ranker_rows
from checkout_recs.models.ranker_features import available_features, ranker_columns, ranker_matrix
from checkout_recs.models.ranker_fit import RankerRows, holdout_rows, labels
from checkout_recs.models.student import StudentConfig, distill_rows
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


def validation_mask(df: pd.DataFrame, share: float) -> np.ndarray:
    """bool (n,): the rows ``split_by_time`` holds out (the latest ``share`` of requests, whole
    requests, by their first ``event_timestamp``); all False for ``share`` 0 or no timestamps.

    Needs only ``request_id`` (when present) and ``event_timestamp``.
    """
    if share <= 0 or "event_timestamp" not in df or len(df) == 0:
        return np.zeros(len(df), bool)
    key = "request_id" if "request_id" in df else None
    first = df.groupby(key)["event_timestamp"].min() if key else df["event_timestamp"]
    cut = first.quantile(1 - share)
    if key:
        val_ids = first.index[first > cut]
        is_val = df[key].isin(val_ids)
    else:
        is_val = df["event_timestamp"] > cut
    return np.asarray(is_val.to_numpy(), bool)


def split_by_time(df: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the latest ``share`` of requests (whole requests, by ``event_timestamp``)."""
    if share <= 0 or "event_timestamp" not in df:
        return df, df.iloc[:0]
    is_val = validation_mask(df, share)
    return df[~is_val], df[is_val]


#: Rows of the training set that ``read_ranker_split`` turns into features at a time.
READ_BATCH_ROWS = 100_000

#: Columns of the training set the ranker reads besides its features.
LABEL_COLUMNS = ("clicked", "purchased")
KEY_COLUMNS = ("request_id", "event_timestamp")


@dataclass
class RankerSplit:
    """The training set as the ranker stage uses it: the train part as ``RankerRows``, the
    held-out part as its feature matrix and labels (``read_ranker_split``)."""

    names: list[str]  # the d feature names, ``ranker_matrix`` column order
    train: RankerRows  # n_train rows (this rank's slates under DDP)
    val_X: np.ndarray  # (n_val, d) float32
    val_clicked: np.ndarray  # (n_val,) the ``clicked`` column as stored
    val_purchased: np.ndarray  # (n_val,) the ``purchased`` column as stored


def _request_keys(dataset: ds.Dataset) -> pd.DataFrame:
    """``request_id`` and ``event_timestamp`` of every row (those present), as the split needs
    them: the ids as int32 codes in order of first appearance (``pd.factorize``'s codes, from
    Arrow's dictionary encoding: no Python string per row), the timestamps as pandas reads them.
    Ids with nulls are kept as strings (``pd.factorize`` would drop them from the groups)."""
    names = dataset.schema.names
    table = dataset.to_table(columns=[c for c in KEY_COLUMNS if c in names])
    keys = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    if "request_id" in names:
        ids = table.column("request_id").combine_chunks()
        keys["request_id"] = (
            pc.dictionary_encode(ids).indices.to_numpy() if ids.null_count == 0 else ids.to_pandas()
        )
    if "event_timestamp" in names:
        keys["event_timestamp"] = table.column("event_timestamp").to_pandas()
    return keys


def read_ranker_split(
    training_set_path: Path,
    share: float,
    early_stopping_share: float,
    names: list[str] | None = None,
    shard: bool = True,
    batch_rows: int = READ_BATCH_ROWS,
) -> RankerSplit:
    """Read the ranker's rows of a training set, split by time, without the whole frame.

    The same arrays as ``split_by_time(read_table(path), share)`` followed by ``train_ranker``'s
    ``ranker_matrix`` / ``labels`` / ``group_codes`` / ``holdout_mask`` (and ``shard_requests``
    on the train part under DDP when ``shard``), but: only the columns the ranker reads
    (``ranker_columns``, the labels, ``request_id``, ``event_timestamp``) are read, the split is
    decided on ``request_id`` and ``event_timestamp`` alone, and the features are computed
    ``batch_rows`` rows at a time into preallocated float32 matrices (4·d bytes a row).

    Parameters
    ----------
    training_set_path : parquet file (or folder of parts) of labelled impressions.
    share : latest share of requests held out for validation (``TrainConfig.validation_share``).
    early_stopping_share : ``RankerConfig.early_stopping_share``, for ``train.hold``.
    names : features to build (e.g. a teacher's); default: every available ranker feature.
    shard : keep this rank's requests only in the train part under DDP (as ``train_ranker``).
    batch_rows : rows per batch.

    Returns
    -------
    RankerSplit. Raises FileNotFoundError when the path is missing.
    """
    path = Path(training_set_path)
    if not path.exists():
        raise FileNotFoundError(f"missing input table: {path}")
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    schema = dataset.schema.names
    if names is None:
        names = available_features(pd.DataFrame(columns=schema))
    keys = _request_keys(dataset)
    is_val = validation_mask(keys, share)
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if shard and rank_world()[1] > 1:  # CRC-32 of the ids as written: read them as strings
        ids = pd.read_parquet(path, columns=[c for c in ("request_id",) if c in schema])
        train_idx = train_idx[shard_mask(ids.iloc[train_idx])]
        del ids
    if "request_id" in keys:
        groups = pd.factorize(keys["request_id"].to_numpy()[train_idx])[0].astype(np.int64)
    else:
        groups = np.arange(len(train_idx), dtype=np.int64)
    hold = (
        holdout_rows(
            groups,
            keys["event_timestamp"].dt.as_unit("ns").array[train_idx],
            early_stopping_share,
        )
        if "event_timestamp" in keys
        else np.zeros(len(train_idx), bool)
    )
    del keys
    d = len(names)
    X_tr, X_val = np.empty((len(train_idx), d), np.float32), np.empty((len(val_idx), d), np.float32)
    yc_tr, yb_tr = np.empty(len(train_idx), np.float32), np.empty(len(train_idx), np.float32)
    clicked_val: list[np.ndarray] = []
    purchased_val: list[np.ndarray] = []
    columns = ranker_columns(schema, names) + [c for c in LABEL_COLUMNS if c in schema]
    offset = 0
    for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
        frame = batch.to_pandas()
        end = offset + len(frame)
        X = ranker_matrix(frame, names)
        lo, hi = np.searchsorted(train_idx, [offset, end])
        rows = train_idx[lo:hi] - offset
        X_tr[lo:hi] = X[rows]
        yc, yb = labels(frame)
        yc_tr[lo:hi], yb_tr[lo:hi] = yc[rows], yb[rows]
        lo, hi = np.searchsorted(val_idx, [offset, end])
        rows = val_idx[lo:hi] - offset
        X_val[lo:hi] = X[rows]
        clicked_val.append(frame["clicked"].to_numpy()[rows])
        purchased_val.append(frame["purchased"].to_numpy()[rows])
        offset = end
    if offset != len(is_val):
        raise ValueError(f"read_ranker_split: read {offset} rows of {len(is_val)}")
    return RankerSplit(
        names=list(names),
        train=RankerRows(X=X_tr, y_click=yc_tr, y_buy=yb_tr, groups=groups, hold=hold),
        val_X=X_val,
        val_clicked=np.concatenate(clicked_val) if clicked_val else np.zeros(0, np.int8),
        val_purchased=np.concatenate(purchased_val) if purchased_val else np.zeros(0, np.int8),
    )


def ranker_metrics_rows(
    model: RankerModel, X: np.ndarray, clicked: np.ndarray, purchased: np.ndarray
) -> dict[str, float]:
    """Held-out metrics of the ranker on arrays: X (n, d) float32 in ``model.feature_names``
    order, the 0/1 labels ``clicked`` and ``purchased`` (n,). Returns {} for no rows, else the AUCs
    ``auc_click``, ``auc_purchase`` (of p_click · p_cvr) and, with clicks,
    ``auc_cvr_given_click``."""
    if len(X) == 0:
        return {}
    p_click, p_cvr = model.predict(X)
    out = {
        "auc_click": auc(clicked, p_click),
        "auc_purchase": auc(purchased, p_click * p_cvr),
    }
    if clicked.sum() > 0:
        m = clicked > 0
        out["auc_cvr_given_click"] = auc(purchased[m], p_cvr[m])
    return out


def _load_interactions(labels_dir: Path) -> pd.DataFrame:
    inter = read_table(Path(labels_dir) / "interactions.parquet")
    return inter[["user_id", "listing_id", "event_timestamp"]]


def interacted_listings(
    features_dir: Path, labels_dir: Path | None, listing_ids: pd.Series | np.ndarray
) -> pd.DataFrame:
    """The rows of ``listing_snapshot(features_dir, labels_dir=labels_dir)`` whose listing is in
    ``listing_ids`` (any length, repeats allowed), by ``listing_id``: what ``train_two_tower``
    reads (its item tower sees the interacted listings only, each row on its own), read a block
    of the snapshot at a time (``iter_listing_snapshot``) instead of the whole catalogue.
    Columns as the snapshot's; a joined column is float64 / object when a kept block has a
    listing missing its joined row."""
    wanted = np.unique(np.asarray(listing_ids, np.int64))
    kept = [
        block[np.isin(block["listing_id"].to_numpy(np.int64), wanted)]
        for block in iter_listing_snapshot(features_dir, labels_dir=labels_dir)
    ]
    kept = [k for k in kept if len(k)] or kept[:1]
    if not kept:
        return listing_snapshot(features_dir, labels_dir=labels_dir)  # no listing: its columns
    return pd.concat(kept, ignore_index=True)


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
    split = read_ranker_split(
        training_set_path, cfg.validation_share, cfg.ranker.early_stopping_share
    )
    ranker = train_ranker_rows(split.train, split.names, cfg.ranker)
    metrics = {f"ranker_{k}": float(v) for k, v in ranker.metrics.items()}
    metrics.update(ranker_metrics_rows(ranker, split.val_X, split.val_clicked, split.val_purchased))
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
    split = read_ranker_split(
        training_set_path, cfg.validation_share, 0.0, names=ranker.feature_names, shard=False
    )
    student = distill_rows(
        ranker, split.train.X, split.train.y_click, split.train.y_buy, cfg.student_cfg
    )
    st = ranker_metrics_rows(student, split.val_X, split.val_clicked, split.val_purchased)
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
    interactions = _load_interactions(labels_dir)
    tt = train_two_tower(
        interactions,
        interacted_listings(features_dir, labels_dir, interactions["listing_id"]),
        cfg.two_tower,
        _users(features_dir),
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
