"""``SnapshotParts`` writes the listing snapshot's blocks as the file of the whole frame: read
back, it equals ``listing_snapshot(...)`` written whole, also where blocks differ in dtype
because a listing misses its content or seller row; an index folder built from a features folder
(blocks streamed through the item tower) is the folder built from the frame, file for file."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs.models.inputs import iter_listing_snapshot, listing_snapshot
from checkout_recs.retrieval import index as index_module
from checkout_recs.retrieval.snapshot_file import SnapshotParts
from tests.fixtures_features import demo_features, missing_joined_rows  # noqa: F401
from tests.fixtures_models import make_model_inputs, tiny_train_config


def read_back(path: Path) -> pd.DataFrame:
    """The file as serving reads it (``index_io.read_folder``)."""
    return pq.read_table(path).to_pandas()


@pytest.mark.parametrize("missing", [False, True])
def test_parts_read_back_as_the_whole_frame(
    demo_features,
    tmp_path: Path,
    missing: bool,  # noqa: F811
) -> None:
    if missing:
        features, labels = missing_joined_rows(demo_features, tmp_path / "in")
    else:
        features, labels = demo_features["features"], demo_features["labels"]
    whole = listing_snapshot(features, labels_dir=labels)
    whole.to_parquet(tmp_path / "whole.parquet", index=False)
    parts = SnapshotParts(tmp_path / "scratch")
    blocks = list(iter_listing_snapshot(features, labels_dir=labels, block_rows=256))
    assert len(blocks) > 2
    for block in blocks:
        parts.add(block)
    if missing:  # the blocks' dtypes differ: the first has every joined row, the last not
        assert not blocks[0].dtypes.equals(blocks[-1].dtypes)
    assert parts.finish(tmp_path / "snapshot.parquet") == len(whole)
    assert not (tmp_path / "scratch").exists()
    got = read_back(tmp_path / "snapshot.parquet")
    pd.testing.assert_frame_equal(got, read_back(tmp_path / "whole.parquet"))
    pd.testing.assert_frame_equal(got, whole)


def test_parts_refuse_other_columns_and_nothing(tmp_path: Path) -> None:
    parts = SnapshotParts(tmp_path / "scratch")
    with pytest.raises(ValueError, match="no snapshot block"):
        parts.finish(tmp_path / "out.parquet")
    parts.add(pd.DataFrame({"listing_id": [1, 2], "price": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="same columns"):
        parts.add(pd.DataFrame({"price": [3.0], "listing_id": [3]}))
    assert parts.rows == 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models (two-tower included) trained on the synthetic working folders."""
    from checkout_recs.models.train import train_all

    root = tmp_path_factory.mktemp("stream_index")
    paths = make_model_inputs(root / "inputs")
    train_all(
        paths["training_set"],
        paths["labels"],
        paths["features"],
        root / "model",
        tiny_train_config(),
    )
    return {**paths, "model": root / "model"}


@pytest.mark.parametrize("block_rows", [128, 1 << 20])
def test_index_from_a_features_folder_is_the_index_from_the_frame(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_rows: int
) -> None:
    monkeypatch.setattr(index_module, "SNAPSHOT_BLOCK_ROWS", block_rows)
    frame = listing_snapshot(trained["features"], labels_dir=trained["labels"])
    a = index_module.build_index(trained["model"], frame, tmp_path / "a")
    b = index_module.build_index(
        trained["model"], trained["features"], tmp_path / "b", labels_dir=trained["labels"]
    )
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())  # no scratch left
    assert a.n_items == b.n_items == len(frame) > 500
    for name in names:
        if name not in ("manifest.json", "snapshot.parquet"):
            assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    pd.testing.assert_frame_equal(
        read_back(tmp_path / "b" / "snapshot.parquet"),
        read_back(tmp_path / "a" / "snapshot.parquet"),
    )
    moving = {"version", "built_at", "build_seconds"}
    assert a.model_dump(exclude=moving) == b.model_dump(exclude=moving)
    loaded = index_module.RetrievalIndex.load(tmp_path / "b")
    assert len(loaded.snapshot) == len(frame) and "title" in loaded.snapshot
