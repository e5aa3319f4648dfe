"""Small synthetic inputs with a learnable signal, and a trained demo bundle, for model tests.

``make_model_inputs(tmp_path)`` writes the folders ``train_all`` reads (``features/``,
``labels/``, ``ingested/validated/listings``, ``training_set.parquet``): 2 regions, 12
categories, 600 listings, 150 users. Users prefer two categories (the two-tower can learn
that); clicks depend on listing quality and on the user's top category, purchases on price
(the ranker can learn that).

``make_demo_bundle(tmp_path)`` trains tiny models on those inputs and assembles a serving
bundle: ``bundle/model/`` (ranker, ranker.pt, two_tower), ``bundle/index/``,
``bundle/candidates/``. It takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2026-03-01", tz="UTC")
REGIONS = ("eu", "us")
WORDS = ("vintage", "red", "leather", "classic", "mini", "pro", "wool", "retro", "oak", "silver")


def _listings(rng: np.random.Generator, n: int = 600) -> pd.DataFrame:
    cat = rng.integers(0, 12, n).astype(np.int32)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    titles = [f"cat{c} {WORDS[rng.integers(10)]} {WORDS[rng.integers(10)]}" for c in cat]
    return pd.DataFrame(
        {
            "listing_id": ids,
            "seller_id": rng.integers(0, 40, n).astype(np.int64),
            "category_id": cat,
            "top_category_id": (cat // 4 + 100).astype(np.int32),
            "region": rng.choice(REGIONS, n),
            "title": titles,
            "price": np.round(np.exp(rng.normal(3.5, 0.8, n)), 2),
            "take_rate": 0.1,
            "quantity": np.int32(1),
            "quality": rng.normal(0, 1, n),
            "listed_at": START - pd.to_timedelta(rng.uniform(0, 60, n), unit="D"),
        }
    )


def _users(rng: np.random.Generator, n: int = 150) -> pd.DataFrame:
    fav = rng.integers(0, 12, (n, 2))
    return pd.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "region": rng.choice(REGIONS, n),
            "device": rng.choice(["web", "ios", "android"], n),
            "fav_a": fav[:, 0],
            "fav_b": fav[:, 1],
        }
    )


def _interactions(rng: np.random.Generator, lst: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    by_cat = {c: g["listing_id"].to_numpy() for c, g in lst.groupby("category_id")}
    rows = []
    for u in users.itertuples():
        n = int(rng.integers(8, 20))
        t = np.sort(rng.uniform(0, 20 * 86400, n))
        for k in range(n):
            c = (
                (u.fav_a if rng.uniform() < 0.5 else u.fav_b)
                if rng.uniform() < 0.85
                else rng.integers(12)
            )
            rows.append(
                (u.user_id, int(rng.choice(by_cat[c])), START + pd.Timedelta(seconds=float(t[k])))
            )
    return pd.DataFrame(rows, columns=["user_id", "listing_id", "event_timestamp"]).assign(
        kind="order"
    )


def _features(
    lst: pd.DataFrame, users: pd.DataFrame, inter: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    ts = START + pd.Timedelta(days=20)
    q = lst["quality"].to_numpy()
    listing = lst[
        [
            "listing_id",
            "seller_id",
            "category_id",
            "top_category_id",
            "region",
            "price",
            "take_rate",
        ]
    ].assign(
        age_days=(ts - lst["listed_at"]).dt.total_seconds() / 86400,
        views_decayed=np.exp(q) * 20,
        clicks_decayed=np.exp(q) * 2,
        purchases_decayed=np.exp(q) * 0.5,
        ctr_smoothed=1 / (1 + np.exp(-(q - 2))),
        cvr_smoothed=0.2 + 0.05 * np.tanh(q),
        event_timestamp=ts,
    )
    for rate in ("ctr", "cvr"):  # against the snapshot's pooled level, as the listing view does
        listing[f"{rate}_lift"] = np.log(
            listing[f"{rate}_smoothed"] / listing[f"{rate}_smoothed"].mean()
        )
    sellers = pd.DataFrame(
        {
            "seller_id": np.arange(40, dtype=np.int64),
            "seller_age_days": np.linspace(1, 400, 40),
            "seller_rating": np.linspace(3, 5, 40),
            "seller_is_new": (np.arange(40) < 5).astype(np.int8),
            "seller_linked_history": np.int8(0),
            "seller_sales_velocity": 0.5,
            "event_timestamp": ts,
        }
    )
    cats = inter.merge(lst[["listing_id", "category_id"]], on="listing_id")
    top = cats.groupby("user_id")["category_id"].agg(lambda s: int(s.mode().iloc[0]))
    user = users[["user_id", "region"]].assign(
        n_purchases=inter.groupby("user_id")
        .size()
        .reindex(users["user_id"])
        .fillna(0)
        .to_numpy()
        .astype(np.int64),
        avg_price_paid=40.0,
        last_price_paid=35.0,
        days_since_last_purchase=3.0,
        top_category_id=top.reindex(users["user_id"]).fillna(-1).to_numpy().astype(np.int32),
        mobile_share=0.5,
        event_timestamp=ts,
    )
    return {"listing": listing, "seller": sellers, "user": user}


def _training_set(
    rng: np.random.Generator, lst: pd.DataFrame, feats: dict, n_req: int = 900
) -> pd.DataFrame:
    user = feats["user"].rename(
        columns={"top_category_id": "user_top_category_id", "region": "user_region"}
    )
    uid = rng.integers(0, len(user), n_req).repeat(6)
    lid = rng.choice(lst["listing_id"].to_numpy(), len(uid))
    df = pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(n_req)], 6),
            "user_id": uid,
            "listing_id": lid,
            "slot": np.tile(np.arange(6, dtype=np.int8), n_req),
            "device": rng.choice(["web", "ios", "android"], len(uid)),
            "event_timestamp": START
            + pd.to_timedelta(np.repeat(np.sort(rng.uniform(0, 20, n_req)), 6), unit="D"),
        }
    )
    df = df.merge(feats["listing"].drop(columns="event_timestamp"), on="listing_id", how="left")
    df = df.merge(feats["seller"].drop(columns="event_timestamp"), on="seller_id", how="left")
    df = df.merge(user.drop(columns="event_timestamp"), on="user_id", how="left")
    q = df["listing_id"].map(lst.set_index("listing_id")["quality"]).to_numpy()
    match = (
        df["category_id"].to_numpy() // 4 + 100 == df["user_top_category_id"].to_numpy() // 4 + 100
    )
    logit = (
        -2.2
        + 0.9 * q
        + 0.8
        * (df["top_category_id"].to_numpy() == df["user_top_category_id"].to_numpy() // 4 + 100)
        + 0.2 * match
    )
    clicked = rng.uniform(size=len(df)) < 1 / (1 + np.exp(-logit))
    p_buy = 1 / (1 + np.exp(-(1.0 - 0.6 * np.log(df["price"].to_numpy() / 30))))
    df["clicked"] = clicked.astype(np.int8)
    df["purchased"] = (clicked & (rng.uniform(size=len(df)) < p_buy)).astype(np.int8)
    return df


def make_model_inputs(tmp_path: Path, seed: int = 5) -> dict[str, Path]:
    """Write the synthetic working folders; returns paths ``training_set, labels, features, validated``."""
    rng = np.random.default_rng(seed)
    lst, users = _listings(rng), _users(rng)
    inter = _interactions(rng, lst, users)
    feats = _features(lst, users, inter)
    root = Path(tmp_path)
    labels, features = root / "labels", root / "features"
    validated = root / "ingested" / "validated" / "listings"
    for d in (labels, features, validated):
        d.mkdir(parents=True, exist_ok=True)
    lst.drop(columns=["quality", "top_category_id"]).to_parquet(
        validated / "part-0.parquet", index=False
    )
    inter.to_parquet(labels / "interactions.parquet", index=False)
    for name, df in feats.items():
        df.to_parquet(features / f"{name}.parquet", index=False)
    pairs = pd.DataFrame(
        {
            "category_a": np.arange(12, dtype=np.int32),
            "category_b": ((np.arange(12) + 1) % 12).astype(np.int32),
            "co_purchase_strength": 2.0,
            "event_timestamp": START + pd.Timedelta(days=20),
        }
    )
    pairs.to_parquet(features / "category_pair.parquet", index=False)
    co = inter.sort_values(["user_id", "event_timestamp"])
    nxt = co.groupby("user_id")["listing_id"].shift(-1)
    co = (
        pd.DataFrame({"listing_a": co["listing_id"], "listing_b": nxt})
        .dropna()
        .astype({"listing_b": np.int64})
    )
    co.assign(strength=1.0).to_parquet(labels / "co_purchase_items.parquet", index=False)
    ts_path = root / "training_set.parquet"
    _training_set(rng, lst, feats).to_parquet(ts_path, index=False)
    return {"training_set": ts_path, "labels": labels, "features": features, "validated": validated}


def tiny_train_config(seed: int = 7):
    """A ``TrainConfig`` small enough for tests (a few seconds on one core)."""
    from checkout_recs.models.ranker import RankerConfig
    from checkout_recs.models.student import StudentConfig
    from checkout_recs.models.train import TrainConfig
    from checkout_recs.models.two_tower import TwoTowerConfig

    return TrainConfig(
        ranker=RankerConfig(epochs=6, hidden=[32, 16], seed=seed),
        student_cfg=StudentConfig(epochs=6, batch_size=256, seed=seed),
        two_tower=TwoTowerConfig(
            dim=16, id_buckets=1 << 12, token_buckets=1 << 10, cat_buckets=64, epochs=3, seed=seed
        ),
        seed=seed,
    )


def make_demo_bundle(tmp_path: Path, seed: int = 7) -> Path:
    """Train tiny models on synthetic inputs (``train_all``) and assemble a serving bundle
    (``assemble_bundle``, layout ``serving.bundle_layout``); returns its folder."""
    from checkout_recs.models.train import train_all
    from checkout_recs.serving.bundle_writer import assemble_bundle

    paths = make_model_inputs(Path(tmp_path) / "inputs", seed=5)
    model = Path(tmp_path) / "model"
    train_all(
        paths["training_set"], paths["labels"], paths["features"], model, tiny_train_config(seed)
    )
    assemble_bundle(model, paths["labels"], paths["features"], Path(tmp_path) / "bundle")
    return Path(tmp_path) / "bundle"


#: The three features ``make_slates`` fills (standard normal each).
SLATE_FEATURES = ["ctr_lift", "seller_rating", "cvr_lift"]


def make_slates(n_requests: int, seed: int, interaction: bool) -> pd.DataFrame:
    """Six-slot requests spread over 10 days with ``SLATE_FEATURES``, ``clicked``, ``purchased``.

    The click logit is linear in the features, or, when ``interaction``, the product of the
    first two (an XOR-like signal a linear model cannot see at all); 30% of clicks buy.
    """
    rng = np.random.default_rng(seed)
    n = 6 * n_requests
    x = rng.normal(size=(n, 3))
    logit = 3.0 * x[:, 0] * x[:, 1] - 1.5 if interaction else 1.5 * x[:, 0] - x[:, 1] - 1.5
    clicked = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    ts = START + pd.to_timedelta(np.repeat(np.sort(rng.uniform(0, 10, n_requests)), 6), unit="D")
    return pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(n_requests), 6).astype(str),
            "event_timestamp": ts,
            **{name: x[:, j] for j, name in enumerate(SLATE_FEATURES)},
            "clicked": clicked.astype(np.int8),
            "purchased": (clicked & (rng.uniform(size=n) < 0.3)).astype(np.int8),
        }
    )
