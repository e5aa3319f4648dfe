"""Units of the category lists: one inverted list per (category, region), pre-assigned scans,
new groups on add, removal, and a round trip through the saved FAISS file."""

from __future__ import annotations

import numpy as np

from checkout_recs.retrieval.index_build import faiss_module
from checkout_recs.retrieval.index_categories import CategoryLists, group_key, split_key


def _lists() -> tuple[CategoryLists, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(400, 8)).astype(np.float32)
    ids = np.arange(400, dtype=np.int64) + 10
    cat, reg = np.arange(400) % 5, (np.arange(400) // 5) % 2
    return CategoryLists(v, ids, cat, reg), v, ids, cat, reg


def test_a_group_scan_returns_only_that_group_best_first():
    cl, v, ids, cat, reg = _lists()
    q = v[7]
    got = cl.search(q, [cl.group_lists(2, 1), cl.group_lists(2, -1)], 5)
    inside = (cat == 2) & (reg == 1)
    assert (
        np.isin(got[0], ids[inside]).all()
        and got[0][0] == ids[np.flatnonzero(inside)][np.argmax(v[inside] @ q)]
    )
    assert np.isin(got[1], ids[cat == 2]).all()
    assert cl.size(cl.group_lists(2, -1)) == int((cat == 2).sum())
    assert split_key(int(group_key(np.array([7]), np.array([-1]))[0])) == (7, -1)


def test_add_new_group_remove_and_reload_from_the_faiss_file():
    cl, v, ids, _, _ = _lists()
    assert cl.add(v[:2], np.array([900, 901]), np.array([9, 9]), np.array([0, 0]))
    assert sorted(cl.search(v[0], [cl.group_lists(9, 0)], 4)[0][:2].tolist()) == [900, 901]
    cl.remove(np.array([900]))
    assert cl.size(cl.group_lists(9, 0)) == 1
    faiss = faiss_module()
    back = CategoryLists.from_index(
        faiss.deserialize_index(faiss.serialize_index(cl.index)), cl.keys_by_list
    )
    for c, r in ((9, 0), (3, 1), (0, -1)):
        np.testing.assert_array_equal(
            back.search(v[3], [back.group_lists(c, r)], 6),
            cl.search(v[3], [cl.group_lists(c, r)], 6),
        )
