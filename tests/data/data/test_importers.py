"""Importers: MovieLens-100K (atomic files) and the OBD sample; row counts match the source files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data.importers import (
    ITEMS,
    RATED_INTERACTIONS,
    import_atomic,
    import_obd,
    obd_root,
)

ML = Path(__file__).resolve().parents[3] / "data" / "external" / "ml-100k"


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip()) - 1  # minus the header


@pytest.mark.skipif(not ML.is_dir(), reason="MovieLens files not unpacked (scripts/bootstrap.sh)")
def test_movielens_rows_match_the_atomic_files(tmp_path: Path) -> None:
    s = import_atomic(ML, tmp_path / "ml")
    out = tmp_path / "ml"
    inter = pq.read_table(out / "interactions.parquet")
    assert inter.num_rows == _lines(ML / "ml-100k.inter") == s.rows["interactions.parquet"]
    assert pq.read_table(out / "items.parquet").num_rows == _lines(ML / "ml-100k.item")
    assert pq.read_table(out / "users").num_rows == _lines(ML / "ml-100k.user")
    assert inter.schema.equals(RATED_INTERACTIONS, check_metadata=False)
    assert pq.read_table(out / "users").schema.equals(contract.USERS, check_metadata=False)
    cats = pq.read_table(out / "categories").to_pandas()
    assert {"Comedy", "Drama", "Action"} <= set(cats.name) and cats.parent_id.isna().all()
    df = inter.to_pandas()
    assert (
        set(df.kind) == {"click", "purchase"}
        and (df.loc[df.kind == "purchase", "rating"] >= 4).all()
    )
    items = pq.read_table(out / "items.parquet").to_pandas()
    assert items.listing_id.is_unique and set(df.listing_id) <= set(items.listing_id)
    assert items.category_id.isin(cats.category_id).all()


def test_any_atomic_dataset_imports_the_same_way(tmp_path: Path) -> None:
    src = tmp_path / "shop"
    src.mkdir()
    (src / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "alice\tsku-b\t5\t1700000000\nbob\tsku-a\t2\t1700000100\nalice\tsku-a\t4\t1700000200\n"
    )
    (src / "shop.item").write_text(
        "item_id:token\ttitle:token_seq\tcategories:token_seq\n"
        "sku-a\tRed Mug\tkitchen mugs\nsku-b\tTent\toutdoor\n"
    )
    s = import_atomic(src, tmp_path / "out")
    inter = pq.read_table(tmp_path / "out" / "interactions.parquet").to_pandas()
    assert s.rows["interactions.parquet"] == 3 and s.rows["items.parquet"] == 2
    assert inter.user_id.tolist() == [1, 2, 1] and inter.listing_id.tolist() == [
        2,
        1,
        1,
    ]  # sorted id maps
    assert inter.kind.tolist() == ["purchase", "click", "purchase"]
    items = pq.read_table(tmp_path / "out" / "items.parquet")
    assert items.schema.equals(ITEMS, check_metadata=False)
    assert len(items.to_pandas().category_ids[0]) == 2


@pytest.mark.parametrize(
    ("policy", "campaign"), [("random", "all"), ("bts", "men"), ("bts", "women")]
)
def test_obd_rows_match_the_csv(policy: str, campaign: str, tmp_path: Path) -> None:
    import pandas as pd

    src = obd_root() / policy / campaign
    s = import_obd(tmp_path / "obd", policy, campaign)
    imp = pq.read_table(tmp_path / "obd" / "impressions.parquet").to_pandas()
    raw = pd.read_csv(src / f"{campaign}.csv", index_col=0)
    assert len(imp) == len(raw) == s.rows["impressions.parquet"]
    assert pq.read_table(tmp_path / "obd" / "items.parquet").num_rows == len(
        pd.read_csv(src / "item_context.csv")
    )
    assert imp.slot.between(0, 2).all() and ((imp.propensity > 0) & (imp.propensity <= 1)).all()
    assert imp.clicked.sum() == raw.click.sum() and (imp.policy == policy).all()


def test_obd_rejects_unknown_campaign(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="campaign"):
        import_obd(tmp_path, "random", "kids")
