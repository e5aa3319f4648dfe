"""Units of the index's array helpers: merging shard results, keeping snapshot dtypes on
append, row-sliced ``.npy`` writes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from checkout_recs.retrieval.index_ops import concat_rows, save_rows, top_per_query


def test_top_per_query_merges_shards_best_first_missing_last():
    ids = np.array([[5, -1, 7, 9]])
    sc = np.array([[0.2, 9.0, 0.8, 0.2]], np.float32)
    got, s = top_per_query(ids, sc, 3)
    assert got.tolist() == [[7, 5, 9]] and s.tolist()[0][0] == np.float32(0.8)


def test_concat_rows_keeps_categorical_and_numeric_dtypes():
    base = pd.DataFrame({"region": pd.Categorical(["eu"]), "age": np.float32([1.0])})
    out = concat_rows(base, [pd.DataFrame({"region": ["us"], "age": [2.5]})])
    assert isinstance(out["region"].dtype, pd.CategoricalDtype) and out["age"].dtype == np.float32
    assert out["region"].tolist() == ["eu", "us"]


def test_save_rows_writes_the_selected_rows_in_blocks(tmp_path):
    a = np.arange(20, dtype=np.float16).reshape(10, 2)
    save_rows(tmp_path / "x.npy", a, np.array([0, 3, 4, 9]), block=3)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), a[[0, 3, 4, 9]])
