"""Adapter between the checkout-recs stages and Feast (the only module that drives Feast).

One class, :class:`FeatureStoreAdapter`, for both environments:

* ``embedded``: SQLite online store and file registry in ``work_dir``, parquet in a local folder;
* ``production``: Redis online store, SQL registry on PostgreSQL, parquet on S3 (or a folder).

The repository config is rendered from ``feature_repo/environments/<env>.yaml`` into
``work_dir/feature_store.yaml``, so the features location, Redis and the registry are injected
per run and nothing is written into the repository.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml
from feast import FeatureStore, RepoConfig

from checkout_recs.features.freshness import FreshnessReport, view_freshness
from checkout_recs.features.pit import VIEW_KEYS, training_column, view_feature_names
from feature_repo.definitions import PROJECT, make_definitions
from feature_repo.online_writes import RANGE_ROWS, newest_rows, write_online

ENV_DIR = Path(__file__).parent / "environments"
VIEWS = ("user", "listing", "seller", "category_pair")
DEFAULT_REGISTRY = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def redis_connection_string(url: str) -> str:
    """``redis[s]://[:password@]host:port/db`` (the Settings form) as Feast's
    ``host:port,db=N[,password=...][,ssl=true]`` (ElastiCache: TLS and an AUTH token)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    out = f"{hostport},db={parts.path.lstrip('/') or 0}"
    if parts.password:
        out += f",password={unquote(parts.password)}"
    if parts.scheme == "rediss":
        out += ",ssl=true"
    return out


@dataclass(frozen=True)
class StoreConfig:
    """Where the feature store lives. ``None`` fields come from ``CHECKOUT_RECS_*`` variables."""

    env: str = "embedded"
    features_uri: str = "runs/latest/features"
    work_dir: Path = Path("artifacts/feast")
    project: str = PROJECT
    redis_url: str | None = None
    registry_url: str | None = None
    s3_endpoint: str | None = None

    def render(self) -> dict:
        """The ``feature_store.yaml`` of this config, as a dict (env vars expanded)."""
        if self.env not in ("embedded", "production"):
            raise ValueError(
                f"unknown feature environment {self.env!r}: use 'embedded' or 'production'"
            )
        values = {
            "FEAST_PROJECT": self.project,
            "FEAST_WORK_DIR": str(Path(self.work_dir).resolve()),
            "FEAST_REDIS": redis_connection_string(
                self.redis_url
                or os.environ.get("CHECKOUT_RECS_REDIS_URL", "redis://127.0.0.1:6379/0")
            ),
            "FEAST_REGISTRY": self.registry_url
            or os.environ.get("CHECKOUT_RECS_FEAST_REGISTRY_URL", DEFAULT_REGISTRY),
        }
        text = (ENV_DIR / f"{self.env}.yaml").read_text()
        for k, v in values.items():
            text = text.replace("${" + k + "}", v)
        return yaml.safe_load(os.path.expandvars(text))


class FeatureStoreAdapter:
    """apply / materialize / online reads / historical retrieval / freshness over one Feast repo."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.work_dir = Path(cfg.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        rendered = cfg.render()
        (self.work_dir / "feature_store.yaml").write_text(yaml.safe_dump(rendered, sort_keys=False))
        self.store = FeatureStore(
            config=RepoConfig(repo_path=self.work_dir, **rendered), repo_path=str(self.work_dir)
        )
        self.source_uri = self._offline_uri()
        self.objects = make_definitions(
            self.source_uri, cfg.s3_endpoint if self.source_uri.startswith("s3://") else None
        )

    # ------------------------------------------------------------------------- offline data
    def _offline_uri(self) -> str:
        """Where Feast reads the parquet: the features URI, or a local mirror of its S3 objects.

        Feast's file offline store reads ``s3://`` through fsspec, which needs ``s3fs``; without
        it the adapter mirrors ``<uri>/<view>.parquet`` into ``work_dir/offline/`` with boto3
        (again before every materialization) and points the sources there.
        """
        uri = self.cfg.features_uri
        if not uri.startswith("s3://") or _has_s3fs():
            return uri
        self.mirror_s3()
        return str((self.work_dir / "offline").resolve())

    def mirror_s3(self) -> list[str]:
        """Download ``<features_uri>/<view>.parquet`` for each view; returns the local paths."""
        import boto3  # lazy: boto3 costs ~0.5 s and only s3:// paths need it

        bucket, _, prefix = self.cfg.features_uri[len("s3://") :].partition("/")
        client = boto3.client("s3", endpoint_url=self.cfg.s3_endpoint)
        dest = self.work_dir / "offline"
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for view in VIEWS:
            key = f"{prefix.rstrip('/')}/{view}.parquet".lstrip("/")
            tmp = dest / f".{view}.parquet.part"
            client.download_file(bucket, key, str(tmp))
            tmp.replace(dest / f"{view}.parquet")
            paths.append(str(dest / f"{view}.parquet"))
        return paths

    # ---------------------------------------------------------------------------------- apply
    def apply(self) -> list[str]:
        """Register entities and feature views (idempotent); returns the object names."""
        self.store.apply(self.objects)
        return [f"{type(o).__name__}:{o.name}" for o in self.objects]

    # ---------------------------------------------------------------------------- materialize
    def _view(self, name: str):
        return self.store.registry.get_feature_view(name, self.cfg.project, allow_cache=False)

    def materialized_until(self, view: str) -> dt.datetime | None:
        """End of the latest materialization window of ``view`` (None when never materialized)."""
        intervals = self._view(view).materialization_intervals
        return max(end for _, end in intervals) if intervals else None

    def materialize(
        self,
        start: dt.datetime | None,
        end: dt.datetime,
        views: list[str] | None = None,
        progress: Callable[[str], None] | None = None,
        range_rows: int | None = RANGE_ROWS,
    ) -> list[dict]:
        """Load each entity's newest feature row with ``start <= event_timestamp <= end`` into
        the online store.

        Parameters
        ----------
        start : datetime or None
            None: incremental, per view from the end of its last window (or from the epoch the
            first time).
        end : datetime
            UTC end of the window.
        views : list of str, optional
            Subset of ``VIEWS`` (default all). Serving reads only ``user`` online (listing and
            seller rows ship in the index snapshot), so a fast path may materialize just that.
        progress : callable, optional
            Called with each view's name before it is materialized (the CLI's progress).
        range_rows : int or None
            Bounded memory (default): the view's file is scanned a range of entity keys of about
            ``range_rows`` rows at a time and each range's newest rows are written through
            ``FeatureStore.write_to_online_store`` (``online_writes``), then the window is logged
            in the registry as ``FeatureStore.materialize`` logs it. None: Feast's
            ``materialize`` (reads the whole window of a view at once). Same online rows.

        Returns
        -------
        list[dict]
            One record per view ``{view, start, end, seconds}``; also appended to
            ``work_dir/materializations.jsonl`` (the window log).
        """
        end = _utc(end)
        if self.source_uri != self.cfg.features_uri:
            self.mirror_s3()
        unknown = set(views or ()) - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown feature views {sorted(unknown)}; known: {list(VIEWS)}")
        records = []
        for view in views or VIEWS:
            if progress is not None:
                progress(view)
            lo = _utc(start) if start is not None else (self.materialized_until(view) or _EPOCH)
            if lo >= end:
                records.append(
                    {
                        "view": view,
                        "start": lo.isoformat(),
                        "end": end.isoformat(),
                        "seconds": 0.0,
                        "skipped": "window empty",
                    }
                )
                continue
            t0 = dt.datetime.now(dt.UTC)
            record: dict[str, Any] = {"view": view, "start": lo.isoformat(), "end": end.isoformat()}
            if range_rows is None:
                self.store.materialize(lo, end, feature_views=[view])
            else:
                record["rows"] = self._materialize_in_ranges(view, lo, end, range_rows)
            record["seconds"] = (dt.datetime.now(dt.UTC) - t0).total_seconds()
            records.append(record)
        with (self.work_dir / "materializations.jsonl").open("a") as fh:
            for r in records:
                fh.write(json.dumps({**r, "at": dt.datetime.now(dt.UTC).isoformat()}) + "\n")
        return records

    def _materialize_in_ranges(
        self, view: str, start: dt.datetime, end: dt.datetime, range_rows: int
    ) -> int:
        """``online_writes`` for one view, then the window logged in the registry; rows written."""
        fv = self._view(view)
        uri = f"{self.source_uri.rstrip('/')}/{view}.parquet"
        filesystem = None
        if "://" in uri:
            filesystem, uri = pafs.FileSystem.from_uri(uri)
        keys = list(fv.join_keys)
        frames = newest_rows(uri, keys, start, end, range_rows, filesystem=filesystem)
        rows = write_online(self.store, view, frames)
        self.store.registry.apply_materialization(fv, self.cfg.project, start, end)
        return rows

    # --------------------------------------------------------------------------- online reads
    def online_user_features(self, user_ids: list[int]) -> dict[str, list]:
        """User features for ``user_ids`` in one online read.

        Returns
        -------
        dict[str, list]
            ``user_id`` and each feature of the ``user`` view, lists of length ``len(user_ids)``;
            None where a user has no row online.
        """
        return self.online_features("user", "user_id", user_ids)

    def online_features(self, view: str, key: str, ids: list[int]) -> dict[str, list]:
        """Features of ``view`` for entity ``ids`` (one online read); None for unknown entities."""
        feats = [f"{view}:{f.name}" for f in self._objects_view(view).features]
        rows = [{key: int(i)} for i in ids]
        return self.store.get_online_features(features=feats, entity_rows=rows).to_dict()

    def _objects_view(self, view: str):
        return next(o for o in self.objects if o.name == view and hasattr(o, "ttl"))

    # ------------------------------------------------------------------------ offline retrieval
    def historical_training_set(self, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time features for entity rows via ``get_historical_features``.

        Feast's file offline store (a) drops an entity row whose entity has feature rows but none
        in ``[t - ttl, t]`` (e.g. rows earlier than all of the entity's feature rows) and (b)
        collapses entity rows that share keys and timestamp. So each view is queried on the
        distinct ``(key, event_timestamp)`` pairs and merged back onto every input row; a pair
        Feast did not return is counted as dropped, and its rows keep NaN features.

        Parameters
        ----------
        entity_df : pd.DataFrame
            ``n`` rows with ``user_id, listing_id, seller_id, event_timestamp`` (UTC); other
            columns pass through.

        Returns
        -------
        pd.DataFrame
            Exactly ``n`` rows in input order: the input columns, the user, listing and seller
            features named as in the training set (``<view>_<feature>``), and ``feast_dropped``
            (bool, True where Feast dropped the row for at least one view).
            ``df.attrs["feast_dropped"]`` holds ``{view: rows dropped}``.
        """
        out = entity_df.copy().reset_index(drop=True)
        out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype(
            "datetime64[ns, UTC]"
        )
        dropped_any = pd.Series(False, index=out.index)
        counts: dict[str, int] = {}
        for view, key in VIEW_KEYS.items():
            names = view_feature_names(view)
            pairs = out[[key, "event_timestamp"]].drop_duplicates().reset_index(drop=True)
            got = self.store.get_historical_features(
                entity_df=pairs, features=[f"{view}:{c}" for c in names], full_feature_names=True
            ).to_df()
            got = got.rename(columns={f"{view}__{c}": training_column(view, c) for c in names})
            got["event_timestamp"] = pd.to_datetime(got["event_timestamp"], utc=True).astype(
                "datetime64[ns, UTC]"
            )
            got = got[[key, "event_timestamp", *[training_column(view, c) for c in names]]]
            got = got.drop_duplicates([key, "event_timestamp"]).assign(_back=True)
            out = out.merge(got, on=[key, "event_timestamp"], how="left")
            dropped = out.pop("_back").isna()
            counts[view] = int(dropped.sum())
            dropped_any |= dropped
        out["feast_dropped"] = dropped_any.to_numpy()
        out.attrs["feast_dropped"] = counts
        return out

    def training_join(self):
        """A ``join`` for ``checkout_recs.features.training.build_training_set`` backed by Feast."""
        return self.historical_training_set

    # ------------------------------------------------------------------------------ freshness
    def newest_value(self, view: str, until: dt.datetime) -> dt.datetime | None:
        """``event_timestamp`` of the newest source row of ``view`` at or before ``until``."""
        ts = _read_timestamps(f"{self.source_uri.rstrip('/')}/{view}.parquet", self.cfg.s3_endpoint)
        ts = ts[ts <= pd.Timestamp(until)]
        return ts.max().to_pydatetime() if len(ts) else None

    def freshness(self, now: dt.datetime | None = None) -> FreshnessReport:
        """Age of each view's newest online value against its SLA at ``now`` (default: clock)."""
        now = _utc(now or dt.datetime.now(dt.UTC))
        report = FreshnessReport(now=now.isoformat())
        for view in VIEWS:
            until = self.materialized_until(view)
            newest = self.newest_value(view, until) if until is not None else None
            report.views.append(view_freshness(view, newest, until, now))
        return report

    # ------------------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Delete this project's online tables/keys and registry entries (only this project)."""
        views = self.store.list_feature_views()
        ents = self.store.list_entities()
        self.store._get_provider().teardown_infra(self.cfg.project, views, ents)
        self.store.registry.delete_project(self.cfg.project, commit=True)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _has_s3fs() -> bool:
    pass

    return importlib.util.find_spec("s3fs") is not None


def _read_timestamps(uri: str, s3_endpoint: str | None) -> pd.Series:
    pass

    if uri.startswith("s3://"):
        fs = (
            pafs.S3FileSystem(endpoint_override=s3_endpoint) if s3_endpoint else pafs.S3FileSystem()
        )
        table = pq.read_table(uri[len("s3://") :], columns=["event_timestamp"], filesystem=fs)
    else:
        table = pq.read_table(uri, columns=["event_timestamp"])
    return pd.to_datetime(table.column("event_timestamp").to_pandas(), utc=True)


def open_store(
    env: str, features_uri: str | Path, work_dir: Path, **kwargs: Any
) -> FeatureStoreAdapter:
    """Shorthand: ``FeatureStoreAdapter(StoreConfig(env, str(features_uri), work_dir, **kwargs))``."""
    uri = (
        str(features_uri)
        if str(features_uri).startswith("s3://")
        else str(Path(features_uri).resolve())
    )
    return FeatureStoreAdapter(
        StoreConfig(env=env, features_uri=uri, work_dir=Path(work_dir), **kwargs)
    )
