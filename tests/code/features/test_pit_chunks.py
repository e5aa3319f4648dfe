"""``pit_join_views`` reads, per chunk of entity rows, only that chunk's feature rows: its answer
and the training set it builds equal the whole-table pandas join (every view read whole, one
``point_in_time_join`` per view), on the demo data and on poisoned synthetic views."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs.features.build import build_feature_tables
from checkout_recs.features.pit import (
    VIEW_KEYS,
    pit_join_views,
    point_in_time_join,
    training_column,
    view_feature_names,
)
from checkout_recs.features.sla import FEATURE_SLAS
from checkout_recs.features.tables import read_labels, read_raw
from checkout_recs.features.training import _entity_rows, build_training_set
from checkout_recs.simulate import SimConfig
from tests.fixtures_data import make_demo_dataset
from tests.fixtures_features import synthetic_features, write_poisoned_features  # noqa: F401


def whole_table_join(features_dir: Path, entity_df: pd.DataFrame) -> pd.DataFrame:
    """The reference: each view read whole, then one as-of join per view (TTL = its SLA)."""
    out = entity_df
    for view, key in VIEW_KEYS.items():
        cols = view_feature_names(view)
        feat = pd.read_parquet(features_dir / f"{view}.parquet")
        feat = feat.rename(columns={c: training_column(view, c) for c in cols})
        out, _ = point_in_time_join(
            out,
            feat,
            key,
            [training_column(view, c) for c in cols],
            ttl=pd.Timedelta(FEATURE_SLAS[view]),
        )
    return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's size, simulated, ingested, labelled, with its feature tables."""
    run = make_demo_dataset(tmp_path_factory.mktemp("pit_chunks_demo"), SimConfig(seed=11))
    build_feature_tables(run / "ingested", run / "labels", run / "features")
    return run


def _entities(run: Path) -> pd.DataFrame:
    imp = read_labels(run / "labels", "impressions_labelled")
    assert imp is not None
    return _entity_rows(imp.reset_index(drop=True), read_raw(run / "ingested", "listings"))


@pytest.mark.parametrize("chunk_rows", [997, 10**9])
def test_chunked_join_equals_the_whole_table_join_on_the_demo_data(demo_run, chunk_rows):
    ent = _entities(demo_run)
    assert len(ent) > 10_000
    want = whole_table_join(demo_run / "features", ent)
    got = pit_join_views(demo_run / "features", chunk_rows=chunk_rows)(ent)
    pd.testing.assert_frame_equal(got, want)
    assert want["listing_views_decayed"].notna().mean() > 0.5  # the join found rows


def test_training_set_equals_the_one_from_the_whole_table_join(demo_run, tmp_path):
    labels, feats, val = demo_run / "labels", demo_run / "features", demo_run / "ingested"
    build_training_set(labels, feats, val, tmp_path / "chunked.parquet")
    build_training_set(
        labels, feats, val, tmp_path / "whole.parquet", join=lambda e: whole_table_join(feats, e)
    )
    a, b = (pq.read_table(tmp_path / f"{n}.parquet") for n in ("chunked", "whole"))
    assert a.num_rows > 10_000 and a.schema.metadata == b.schema.metadata and a.equals(b)


def test_chunked_join_equals_the_whole_table_join_on_poisoned_views(synthetic_features, tmp_path):  # noqa: F811
    """Rows 1 us after each impression (``write_poisoned_features``) sit at a chunk's time edge."""
    f = synthetic_features
    write_poisoned_features(f, tmp_path / "features")
    imp = read_labels(f["labels"], "impressions_labelled")
    assert imp is not None
    ent = _entity_rows(imp.reset_index(drop=True), read_raw(f["validated"], "listings"))
    want = whole_table_join(tmp_path / "features", ent)
    got = pit_join_views(tmp_path / "features", chunk_rows=3)(ent)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("chunk_rows", [997, 4_001])
def test_training_set_built_by_chunks_of_impressions_equals_the_one_built_at_once(
    demo_run, tmp_path, chunk_rows
):
    """Chunks of labelled impressions (whole requests each, the lookups read for the chunk only)
    write the same file and report as one chunk; a join is called once per chunk."""
    labels, feats, val = demo_run / "labels", demo_run / "features", demo_run / "ingested"
    whole = build_training_set(labels, feats, val, tmp_path / "whole.parquet", chunk_rows=None)
    calls: list[int] = []

    def join(entities: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(entities))
        return pit_join_views(feats)(entities)

    got = build_training_set(
        labels, feats, val, tmp_path / "chunks.parquet", join=join, chunk_rows=chunk_rows
    )
    a, b = (pq.read_table(tmp_path / f"{n}.parquet") for n in ("chunks", "whole"))
    assert a.num_rows == whole.rows_in > 10_000
    assert a.schema.metadata == b.schema.metadata and a.equals(b)
    assert len(calls) >= whole.rows_in // chunk_rows and sum(calls) == whole.rows_in
    assert max(calls) < chunk_rows + 50  # a chunk ends at the end of a request
    assert {**vars(got), "path": ""} == {**vars(whole), "path": ""}
