"""Shared helpers and fixtures of the feature tests (small, deterministic).

* ``make_feature_inputs(tmp_path)`` writes validated + labels folders in their contract schemas:
  12 categories under 3 top categories, 20 sellers, 200 listings, 60 users, 10 days of orders,
  impressions (six per order), clicks and purchases, labelled impressions, daily category-pair
  and co-purchase snapshots.
* fixtures ``synthetic_features`` / ``demo_features`` (inputs + built feature tables) and
  ``s3_features`` (the tables on a moto S3 server); import them explicitly.
* ``write_poisoned_features`` / ``assert_no_future_poison``: the point-in-time leak test.
* ``open_test_store(env, ...)``: a Feast store on a fresh project; production uses Redis db 13
  and the PostgreSQL database ``checkout_recs_features_test`` (created on first use).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract

START = pd.Timestamp("2026-03-01", tz="UTC")
DAYS = 10


def _write(df: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df.copy()
    for f in schema:
        if pa.types.is_timestamp(f.type):
            df[f.name] = (
                pd.to_datetime(df[f.name], utc=True).dt.floor("us").astype("datetime64[us, UTC]")
            )
    pq.write_table(
        pa.Table.from_pandas(df[contract.field_names(schema)], schema=schema, preserve_index=False),
        path,
    )


def _ts(rng: np.random.Generator, n: int, start: pd.Timestamp, days: float) -> pd.Series:
    secs = np.sort(rng.uniform(0, days * 86400, n))
    return pd.Series(start + pd.to_timedelta(secs, unit="s")).astype("datetime64[us, UTC]")


def _entities(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    cats = pd.DataFrame(
        {
            "category_id": np.arange(12, dtype=np.int32),
            "parent_id": None,
            "top_category_id": (np.arange(12) // 4 + 100).astype(np.int32),
            "name": [f"c{i}" for i in range(12)],
        }
    )
    sellers = pd.DataFrame(
        {
            "seller_id": np.arange(20),
            "region": "eu",
            "joined_at": START - pd.to_timedelta(rng.integers(0, 90, 20), unit="D"),
            "rating": np.where(np.arange(20) % 4 == 0, np.nan, rng.uniform(3, 5, 20)),
            "linked_history": np.arange(20) % 3 == 0,
        }
    )
    n_l = 200
    listings = pd.DataFrame(
        {
            "listing_id": np.arange(1000, 1000 + n_l),
            "seller_id": rng.integers(0, 20, n_l),
            "category_id": rng.integers(0, 12, n_l).astype(np.int32),
            "region": "eu",
            "title": "item",
            "price": rng.uniform(5, 200, n_l).round(2),
            "take_rate": 0.1,
            "quantity": np.int32(1),
            "listed_at": START
            - pd.Timedelta(days=5)
            + pd.to_timedelta(rng.uniform(0, 12 * 86400, n_l), unit="s"),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": np.arange(60),
            "region": "eu",
            "device": rng.choice(list(contract.DEVICES), 60),
            "signup_at": START - pd.to_timedelta(rng.integers(0, 30, 60), unit="D"),
        }
    )
    return {"categories": cats, "sellers": sellers, "listings": listings, "users": users}


def _events(rng: np.random.Generator, ent: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    lst = ent["listings"]
    n_o = 150
    ts = _ts(rng, n_o, START, DAYS)
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n_o)],
            "user_id": rng.integers(0, 60, n_o),
            "listing_id": rng.choice(lst["listing_id"], n_o),
            "quantity": np.int32(1),
            "region": "eu",
            "device": rng.choice(list(contract.DEVICES), n_o),
            "event_timestamp": ts,
        }
    )
    orders["price"] = orders["listing_id"].map(lst.set_index("listing_id")["price"])
    imp = orders.loc[orders.index.repeat(6)].reset_index(drop=True)
    imp["slot"] = np.tile(np.arange(6, dtype=np.int8), n_o)
    imp["request_id"] = "r" + imp["order_id"].str[1:]
    imp["listing_id"] = rng.choice(lst["listing_id"], len(imp))
    imp["policy"], imp["propensity"] = "heuristic", 0.5
    imp["event_timestamp"] = imp["event_timestamp"] + pd.Timedelta(seconds=1)
    imp["clicked"] = (rng.uniform(size=len(imp)) < 0.2).astype(np.int8)
    imp["purchased"] = (imp["clicked"].astype(bool) & (rng.uniform(size=len(imp)) < 0.3)).astype(
        np.int8
    )
    imp["price"] = imp["listing_id"].map(lst.set_index("listing_id")["price"])
    imp["take_rate"] = 0.1
    c = imp[imp["clicked"] == 1].assign(
        event_timestamp=lambda d: d["event_timestamp"] + pd.Timedelta(minutes=1)
    )
    p = imp[imp["purchased"] == 1].assign(
        event_timestamp=lambda d: d["event_timestamp"] + pd.Timedelta(minutes=5)
    )
    p = p.assign(purchase_id=[f"p{i}" for i in range(len(p))])
    return {"orders": orders, "impressions": imp, "clicks": c, "purchases": p}


def _category_pairs(rng: np.random.Generator) -> pd.DataFrame:
    a, b = np.meshgrid(np.arange(12), np.arange(12))
    pairs = pd.DataFrame(
        {"category_a": a.ravel().astype(np.int32), "category_b": b.ravel().astype(np.int32)}
    )
    pairs = pairs[pairs["category_a"] != pairs["category_b"]]
    days = [START + pd.Timedelta(days=d) for d in range(DAYS)]
    out = pd.concat(
        [
            pairs.assign(event_timestamp=t, co_purchase_strength=rng.uniform(0, 3, len(pairs)))
            for t in days
        ],
        ignore_index=True,
    )
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[us, UTC]")
    return out


def make_feature_inputs(tmp_path: Path, seed: int = 3) -> tuple[Path, Path]:
    """Write synthetic ``ingested/validated`` and ``labels`` folders; return their paths."""
    rng = np.random.default_rng(seed)
    ent = _entities(rng)
    ev = _events(rng, ent)
    validated = tmp_path / "ingested" / "validated"
    for name, df in {**ent, **ev}.items():
        _write(df, contract.RAW_TABLES[name], validated / name / "part-0.parquet")
    labels = tmp_path / "labels"
    _write(
        ev["impressions"], contract.LABELLED_IMPRESSIONS, labels / "impressions_labelled.parquet"
    )
    _write(_category_pairs(rng), contract.CATEGORY_PAIR_FEATURES, labels / "category_pairs.parquet")
    co = pd.DataFrame(
        {
            "listing_a": [1000, 1001, 1000],
            "listing_b": [1001, 1000, 1001],
            "strength": [1.0, 1.0, 0.5],
            "event_timestamp": [START + pd.Timedelta(days=2)] * 2 + [START + pd.Timedelta(days=3)],
        }
    )
    co["event_timestamp"] = co["event_timestamp"].astype("datetime64[us, UTC]")
    co.to_parquet(labels / "co_purchase_items.parquet", index=False)
    return validated, labels


def write_poisoned_features(f: dict[str, Path], dest: Path) -> pd.Series:
    """Copy the feature tables to ``dest`` plus, per impression ``i``, one row per view stamped
    1 us after the impression whose value encodes ``i`` (user ``n_purchases = 1e9 + i``,
    listing ``views_decayed`` and seller ``seller_sales_velocity = -1 - i``).

    Returns the poison times (``after[i]``). A poison row is legitimately visible to later
    impressions of the same entity; ``assert_no_future_poison`` checks that no row sees one
    stamped after its own time.
    """
    dest.mkdir(parents=True, exist_ok=True)
    imp = pd.read_parquet(f["labels"] / "impressions_labelled.parquet")
    listings = pd.read_parquet(f["validated"] / "listings")
    imp = imp.merge(listings[["listing_id", "seller_id"]], on="listing_id", how="left")
    after = (imp["event_timestamp"] + pd.Timedelta(microseconds=1)).reset_index(drop=True)
    code = np.arange(len(imp))
    for view, key, col, value in (
        ("user", "user_id", "n_purchases", 10**9 + code),
        ("listing", "listing_id", "views_decayed", -1.0 - code),
        ("seller", "seller_id", "seller_sales_velocity", -1.0 - code),
    ):
        base = pd.read_parquet(f["features"] / f"{view}.parquet")
        rows = base.drop_duplicates(key).set_index(key).reindex(imp[key]).reset_index()
        rows[col], rows["event_timestamp"] = value, after.to_numpy()
        out = pd.concat([base, rows.dropna(subset=["event_timestamp"])], ignore_index=True)
        _write(
            out.astype({col: base[col].dtype}),
            contract.FEATURE_TABLES[view],
            dest / f"{view}.parquet",
        )
    (dest / "category_pair.parquet").write_bytes(
        (f["features"] / "category_pair.parquet").read_bytes()
    )
    return after


def assert_no_future_poison(df: pd.DataFrame, after: pd.Series) -> None:
    """Every poison value in the training set ``df`` was stamped at or before its row's time,
    none is the row's own impression's, and at least one poison value is reachable at all."""
    seen = 0
    for col, decode in (
        ("user_n_purchases", lambda v: v - 10**9),
        ("listing_views_decayed", lambda v: -v - 1),
        ("seller_sales_velocity", lambda v: -v - 1),
    ):
        poisoned = (df[col] >= 10**9) if col == "user_n_purchases" else (df[col] < 0)
        src = decode(df.loc[poisoned, col]).round().astype(int).to_numpy()
        assert (
            after.iloc[src].to_numpy() <= df.loc[poisoned, "event_timestamp"].to_numpy()
        ).all(), col
        assert not (src == df.index[poisoned].to_numpy()).any(), col
        seen += int(poisoned.sum())
    assert seen > 0


# ------------------------------------------------------------------------------------------
# pytest fixtures (import them explicitly in a test module: ``from tests.fixtures_features
# import synthetic_features, demo_features``)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic inputs plus built feature tables: ``{"validated", "labels", "features"}``."""
    from checkout_recs.features.build import build_feature_tables

    root = tmp_path_factory.mktemp("feat_synth")
    validated, labels = make_feature_inputs(root)
    build_feature_tables(validated, labels, root / "features")
    return {"root": root, "validated": validated, "labels": labels, "features": root / "features"}


@pytest.fixture(scope="module")
def demo_features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The data engineer's tiny simulated run plus built feature tables."""
    from checkout_recs.features.build import build_feature_tables
    from tests.fixtures_data import make_demo_dataset

    root = tmp_path_factory.mktemp("feat_demo")
    run = make_demo_dataset(root)
    build_feature_tables(run / "ingested", run / "labels", run / "features")
    return {
        "root": root,
        "validated": run / "ingested",
        "labels": run / "labels",
        "features": run / "features",
    }


#: Dedicated Redis db and PostgreSQL database of the feature tests (other areas use others).
FEATURE_TEST_REDIS_URL = "redis://127.0.0.1:6379/13"
FEATURE_TEST_PG_DB = "checkout_recs_features_test"


def feature_test_registry_url() -> str:
    """SQLAlchemy URL of the tests' registry database, created when missing."""
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (FEATURE_TEST_PG_DB,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{FEATURE_TEST_PG_DB}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{FEATURE_TEST_PG_DB}"


def open_test_store(env: str, features: Path | str, work_dir: Path, s3_endpoint: str | None = None):
    """A feature store on a fresh project name (teardown with ``.teardown()``)."""
    import uuid

    from feature_repo.store import open_store

    project = f"crfeat_{uuid.uuid4().hex[:8]}"
    if env == "production":
        return open_store(
            env,
            features,
            work_dir,
            project=project,
            redis_url=FEATURE_TEST_REDIS_URL,
            registry_url=feature_test_registry_url(),
            s3_endpoint=s3_endpoint,
        )
    return open_store(env, features, work_dir, project=project)


@pytest.fixture(scope="module")
def s3_features(synthetic_features):  # noqa: ANN001, ANN201
    """The synthetic feature tables uploaded to a moto S3 server on loopback: ``(uri, endpoint)``."""
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(k, v)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="features")
        for f in sorted(synthetic_features["features"].glob("*.parquet")):
            client.upload_file(str(f), "features", f"runs/r1/features/{f.name}")
        try:
            yield "s3://features/runs/r1/features", endpoint
        finally:
            server.stop()


def missing_joined_rows(demo_features: dict[str, Path], dest: Path) -> tuple[Path, Path]:
    """A copy of the demo's listing and seller views and validated listings where the last
    listings lose their content and the last three a seller with feature rows; returns (features,
    labels) folders (labels empty: the validated listings are found next to the features)."""
    from checkout_recs.models.inputs import find_validated_listings

    features = dest / "features"
    features.mkdir(parents=True)
    listing = pd.read_parquet(demo_features["features"] / "listing.parquet")
    tail = listing["listing_id"] >= listing["listing_id"].drop_duplicates().nlargest(3).min()
    listing.loc[tail, "seller_id"] = listing["seller_id"].max() + 1  # a seller without rows
    listing.to_parquet(features / "listing.parquet", index=False)
    shutil.copy(demo_features["features"] / "seller.parquet", features / "seller.parquet")
    content = pd.read_parquet(
        find_validated_listings(demo_features["features"], demo_features["labels"])
    )
    last = content["listing_id"].nlargest(5)
    (dest / "validated" / "listings").mkdir(parents=True)
    content[~content["listing_id"].isin(last)].to_parquet(
        dest / "validated" / "listings" / "part-0.parquet", index=False
    )
    (dest / "labels").mkdir()
    return features, dest / "labels"
