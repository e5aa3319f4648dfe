"""Fixtures of the ops area for the GMV guardrail and the registry aliases. Import explicitly:

    from tests.fixtures_ops_gmv import DecisionTraffic, mlflow_db  # noqa: F401

``DecisionTraffic`` plays the checkout page and the buyers during a canary: at every call it
answers ``per_tick`` requests split by the fake API server's current traffic, publishes them as a
decision-log part (``contract.DECISIONS``, through ``ArtifactStore.publish`` like serving does)
and appends the buyers' clicks and purchases to raw-log folders. GMV per session of each arm is
set by ``buy_rate(arm, canary_percent)``. Each answer's transformer and ranker are drawn as KServe
routes them: once per request when collocated (one predictor component), independently from each
component's split when transformer and predictor are split apart; the ranker's arm decides what
sells, and both bundles are logged (``index_version``, ``predictor_version``).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.storage import LocalArtifactStore

N_LISTINGS = 300


class DecisionTraffic:
    """Decision log + outcome events of a canary (see the module docstring).

    Parameters
    ----------
    fake : the ``FakeKube`` whose traffic split routes the requests.
    store : where the decision log is published (kind ``decisions``).
    outcomes : folder receiving ``clicks/``, ``purchases/``, ``listings/`` parquet.
    arms : ``{"canary": index_version, "champion": index_version}`` logged per answer.
    buy_rate : ``(arm, canary_percent) -> P(one purchase | session)``; the bought listing is a
        clicked one, so GMV per session = buy_rate x mean price.
    """

    def __init__(
        self,
        fake,
        namespace: str,
        name: str,
        store: LocalArtifactStore,
        outcomes: Path,  # noqa: ANN001
        arms: dict[str, str],
        buy_rate: Callable[[str, int], float],
        per_tick: int = 1500,
        seed: int = 3,
    ) -> None:
        self.fake, self.ns, self.name, self.store, self.outcomes = (
            fake,
            namespace,
            name,
            store,
            Path(outcomes),
        )
        self.arms, self.buy_rate, self.per_tick = arms, buy_rate, per_tick
        self.rng = np.random.default_rng(seed)
        self.ticks, self.sessions, self.mismatched = 0, {"canary": 0, "champion": 0}, 0
        self.prices = np.round(self.rng.uniform(20, 60, N_LISTINGS), 2)
        listings = pd.DataFrame(
            {
                "listing_id": np.arange(N_LISTINGS, dtype=np.int64),
                "seller_id": np.arange(N_LISTINGS, dtype=np.int64),
                "category_id": np.zeros(N_LISTINGS, np.int32),
                "region": "eu",
                "title": "item",
                "price": self.prices,
                "take_rate": 0.1,
                "quantity": np.ones(N_LISTINGS, np.int32),
                "listed_at": pd.Timestamp("2026-01-01", tz="UTC"),
            }
        )
        self._write("listings", listings)

    def _write(self, table: str, df: pd.DataFrame) -> None:
        folder = self.outcomes / table
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(df, schema=contract.RAW_TABLES[table], preserve_index=False),
            folder / f"part-{self.ticks:05d}.parquet",
        )

    def _canary_percent(self, comp: str | None = None) -> int:
        """The latest revision's share of ``comp`` (default: the component requests enter through);
        0 when one revision has it all."""
        traffic = self.fake.traffic(self.ns, self.name, comp)
        latest = max(traffic, key=lambda r: int(r.rsplit("-", 1)[1]))
        return traffic[latest] if len(traffic) > 1 else 0

    def _routes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(transformer is the canary's, ranker is the canary's) per request, as KServe routes them."""
        front = self.rng.uniform(size=n) < self._canary_percent() / 100
        if (
            "transformer" not in self.fake.isvcs[(self.ns, self.name)]["spec"]
        ):  # collocated: one split
            return front, front
        return front, self.rng.uniform(size=n) < self._canary_percent("predictor") / 100

    def __call__(self) -> None:
        canary_pct = self._canary_percent()
        self.ticks += 1
        n, now = self.per_tick, dt.datetime.now(dt.UTC)
        front, ranker = self._routes(n)
        rows, clicks, buys = [], [], []
        for i in range(n):
            arm, scored_by = (
                ("canary" if front[i] else "champion"),
                ("canary" if ranker[i] else "champion"),
            )
            self.sessions[arm] += 1
            self.mismatched += arm != scored_by
            rid, user = f"t{self.ticks}-{i}", int(self.rng.integers(1, 10_000))
            items = self.rng.choice(N_LISTINGS, 6, replace=False).astype(np.int64).tolist()
            rows.append(_decision(rid, user, now, items, self.arms[arm], self.arms[scored_by]))
            if self.rng.uniform() < 0.5:  # one click per engaged session
                item = items[int(self.rng.integers(6))]
                clicks.append((rid, user, item, now + dt.timedelta(seconds=1)))
                if self.rng.uniform() < 2 * self.buy_rate(
                    scored_by, canary_pct
                ):  # P(buy | click) = 2 buy_rate
                    buys.append(
                        (
                            f"p-{rid}",
                            user,
                            item,
                            float(self.prices[item]),
                            now + dt.timedelta(seconds=5),
                        )
                    )
        with_dir = self.outcomes.parent / f"decisions-part-{self.ticks}"
        with_dir.mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=contract.DECISIONS), with_dir / "part-0.parquet"
        )
        self.store.publish("decisions", f"d{self.ticks:05d}", with_dir)
        shutil.rmtree(with_dir)
        self._write(
            "clicks",
            pd.DataFrame(
                clicks, columns=["request_id", "user_id", "listing_id", "event_timestamp"]
            ),
        )
        self._write(
            "purchases",
            pd.DataFrame(
                buys, columns=["purchase_id", "user_id", "listing_id", "price", "event_timestamp"]
            ),
        )


def _decision(
    rid: str,
    user: int,
    now: dt.datetime,
    items: list[int],
    index_version: str,
    predictor_version: str,
) -> dict:
    return {
        "request_id": rid,
        "event_timestamp": now,
        "user_id": user,
        "region": "eu",
        "device": "web",
        "basket_ids": [1],
        "policy": "ranker",
        "fallback_reason": None,
        "session_class": "known",
        "model_version": "m-" + index_version,
        "index_version": index_version,
        "predictor_version": predictor_version,
        "item_ids": items,
        "scores": [1.0] * 6,
        "propensities": [0.9] * 6,
        "sources": ["ann"] * 6,
        "reasons": ["r"] * 6,
        "explored": False,
        "exploration_cost": 0.0,
        "n_candidates": 50,
        "n_filtered_out": 0,
        "snapshot_ids": items,
        "snapshot_scores": [1.0] * 6,
        "latency_ms": 9.0,
        "timings_json": "{}",
    }


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory) -> Path:  # noqa: ANN001
    """An initialised, empty MLflow SQLite database (schema migrations run once per session)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def mlflow_db(_mlflow_template: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh MLflow tracking URI (SQLite file) per test; experiment ``ops-test`` keeps its run
    artifacts under ``tmp_path/mlruns`` (not the working directory)."""
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copyfile(_mlflow_template, db)
    uri = f"sqlite:///{db}"
    MlflowClient(tracking_uri=uri).create_experiment(
        "ops-test", artifact_location=(tmp_path / "mlruns").as_uri()
    )
    yield uri


def logged_run(uri: str, metrics: dict[str, float], art_root: Path) -> str:
    """One MLflow run with ``metrics`` and a tiny ``model`` artifact folder; its run id."""
    from checkout_recs.tracking import log_training_run

    art = Path(art_root) / "art"
    art.mkdir(parents=True, exist_ok=True)
    (art / "config.json").write_text("{}")
    return log_training_run(uri, "ops-test", {"seed": 1}, metrics, art)
