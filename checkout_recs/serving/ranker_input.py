"""Fast assembly of the ranker's input matrix on the request path, identical to ``ranker_matrix``.

``models.ranker_features.ranker_matrix`` is the one definition of every feature. Calling it on a
pandas frame of a few hundred candidates costs milliseconds; most columns, though, depend on the
listing alone. ``RankerInputPlan`` splits the model's feature names into

* **item** features (snapshot columns and what derives from them): computed once at load for the
  whole snapshot by ``ranker_matrix`` -> float32 (N, d_item), then gathered by row;
* **request** features (user view, request features, device, hour): one ``ranker_matrix`` row per
  request, broadcast;
* **pair** features (interaction features, ``price_to_user_avg``, ``same_top_category_as_user``):
  ``ranker_matrix`` over a narrow frame of the candidates only.

Every column is still produced by ``ranker_matrix``; ``tests/code/serving/test_ranker_input.py``
checks the result equals ``ranker_matrix`` on the full frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.models.ranker_features import DERIVED, LOG_FEATURES, ranker_matrix

_REQUEST_DERIVED = {"hour_sin", "hour_cos", "device_ios", "device_android"}
_PAIR_DERIVED = {"price_to_user_avg", "same_top_category_as_user"}
_USER_SKIP = {"user_id", "region", "event_timestamp", "recent_listing_ids", "recent_category_ids"}


def _on_demand_sets() -> tuple[set[str], set[str]]:
    try:
        from checkout_recs.features import on_demand
    except ImportError:
        return set(), set()
    return set(on_demand.REQUEST_FEATURES), set(on_demand.INTERACTION_FEATURES)


class RankerInputPlan:
    """Precomputed item block + per-request assembly (see module docstring).

    Parameters
    ----------
    names : the model's feature names, in order (length d).
    snapshot : the item snapshot frame (N rows, ``ItemCatalog.frame``).
    """

    def __init__(self, names: Sequence[str], snapshot: pd.DataFrame) -> None:
        req_od, pair_od = _on_demand_sets()
        user_cols = {f.name for f in contract.USER_FEATURES} - _USER_SKIP
        request = req_od | _REQUEST_DERIVED | (user_cols - set(snapshot.columns))
        pair = pair_od | _PAIR_DERIVED
        self.names = list(names)
        self.item_idx = [j for j, n in enumerate(self.names) if n not in request and n not in pair]
        self.request_idx = [j for j, n in enumerate(self.names) if n in request and n not in pair]
        self.pair_idx = [j for j, n in enumerate(self.names) if n in pair]
        self.item_block = ranker_matrix(
            snapshot, [self.names[j] for j in self.item_idx]
        )  # (N, d_item)

        self._ranker_matrix = ranker_matrix
        self._derived = set(DERIVED) - set(snapshot.columns)
        self._memo: dict[tuple, float] = {}
        self._price = snapshot["price"].to_numpy(np.float64)
        self._top = (
            snapshot["top_category_id"].to_numpy() if "top_category_id" in snapshot else None
        )
        self._prepare_columns()

    def _prepare_columns(self) -> None:
        """What ``build`` would otherwise work out per request: column positions as a slice or an
        index array, which request / pair columns are plain or derived, and which take log1p."""
        names, derived = self.names, self._derived
        self._item_cols = _columns(self.item_idx)
        self._req_plain = [j for j in self.request_idx if names[j] not in derived]
        self._req_plain_names = [names[j] for j in self._req_plain]
        self._req_plain_log = np.array([names[j] in LOG_FEATURES for j in self._req_plain], bool)
        self._req_derived = [j for j in self.request_idx if names[j] in derived]
        self._req_cols = np.array(self._req_plain + self._req_derived, np.intp)
        self._pair_plain = [j for j in self.pair_idx if names[j] not in derived]
        self._pair_plain_names = [names[j] for j in self._pair_plain]
        self._pair_plain_log = np.array([names[j] in LOG_FEATURES for j in self._pair_plain], bool)
        self._pair_plain_cols = np.array(self._pair_plain, np.intp)
        self._pair_derived = [j for j in self.pair_idx if names[j] in derived]

    def build(
        self,
        rows: np.ndarray,
        user: dict[str, Any] | None,
        device: str,
        ts: pd.Timestamp,
        request_feats: dict[str, float],
        pair_feats: dict[str, np.ndarray],
    ) -> np.ndarray:
        """The matrix float32 (n, d) for catalogue ``rows`` (int64 (n,)).

        ``user`` holds user-view values, ``request_feats`` the request's on-demand features,
        ``pair_feats`` one (n,) array per interaction feature. Plain columns get exactly
        ``ranker_matrix``'s transform (log1p for ``LOG_FEATURES``, non-finite -> 0); derived
        columns are computed by ``ranker_matrix`` itself (hour/device ones memoised per minute).
        """
        n = len(rows)
        out = np.empty((n, len(self.names)), dtype=np.float32)
        out[:, self._item_cols] = self.item_block[rows]
        one: dict[str, Any] = dict(request_feats)
        for k, v in (user or {}).items():
            if k not in _USER_SKIP and not isinstance(v, list | np.ndarray):
                one["user_top_category_id" if k == "top_category_id" else k] = v
        minute = int(ts.value // 60_000_000_000)
        row = _plain_block(
            np.array([_zero(one.get(k)) for k in self._req_plain_names], np.float32),
            self._req_plain_log,
        )
        derived = [self._derived_request(self.names[j], device, minute) for j in self._req_derived]
        out[:, self._req_cols] = np.concatenate([row, np.array(derived, np.float32)])
        if self._pair_plain:
            block = np.empty((n, len(self._pair_plain)), np.float32)
            for i, k in enumerate(self._pair_plain_names):
                block[:, i] = _zero(pair_feats.get(k, 0.0))
            out[:, self._pair_plain_cols] = _plain_block(block, self._pair_plain_log)
        slow = [
            j
            for j in self._pair_derived
            if self.names[j] not in _FAST_PAIR or not _FAST_PAIR_NEEDS[self.names[j]] <= one.keys()
        ]
        for j in self._pair_derived:
            if j not in slow:  # the only columns that can come out non-finite
                x = _FAST_PAIR[self.names[j]](self, rows, one)
                out[:, j] = np.where(np.isfinite(x), x, np.float32(0.0))
        if slow:
            frame: dict[str, Any] = {
                "price": self._price[rows],
                **{
                    k: np.full(n, one[k])
                    for k in ("avg_price_paid", "user_top_category_id")
                    if k in one
                },
            }
            if self._top is not None:
                frame["top_category_id"] = self._top[rows]
            out[:, slow] = self._ranker_matrix(pd.DataFrame(frame), [self.names[j] for j in slow])
        return out

    def _derived_request(self, name: str, device: str, minute: int) -> float:
        key = (name, device, minute)
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) > 10_000:
                self._memo.clear()
            frame = pd.DataFrame(
                {
                    "device": [device],
                    "event_timestamp": [pd.Timestamp(minute * 60_000_000_000, tz="UTC")],
                }
            )
            hit = float(self._ranker_matrix(frame, [name])[0, 0])
            self._memo[key] = hit
        return hit


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


#: numpy versions of ``ranker_features.DERIVED`` pair features, bit-identical to the pandas path
#: (float32 throughout, like ``_col``); ``test_serving_core`` asserts equality with
#: ``ranker_matrix`` on the full frame, so a change in ``DERIVED`` fails that test, not silently.
_FAST_PAIR = {
    "price_to_user_avg": lambda plan, rows, one: (
        np.log1p(_f32(plan._price[rows]))
        - np.log1p(_f32(np.nan_to_num(float(one["avg_price_paid"]))))
    ),
    "same_top_category_as_user": lambda plan, rows, one: (
        _f32(plan._top[rows])
        == _f32(-3 if one["user_top_category_id"] is None else one["user_top_category_id"])
    ).astype(np.float32),
}
_FAST_PAIR_NEEDS = {
    "price_to_user_avg": {"avg_price_paid"},
    "same_top_category_as_user": {"user_top_category_id"},
}


def _plain(name: str, value: Any) -> Any:
    """``ranker_matrix``'s transform of a plain (non-derived) column value or array."""

    x = np.asarray(0.0 if value is None else value, dtype=np.float32)  # float32 like ``_col``
    x = np.where(np.isfinite(x), x, np.float32(0.0))
    if name in LOG_FEATURES:
        x = np.log1p(np.maximum(x, np.float32(0.0)))
    return x


def _zero(value: Any) -> Any:
    """``_plain``'s None -> 0.0."""
    return 0.0 if value is None else value


def _plain_block(x: np.ndarray, log: np.ndarray) -> np.ndarray:
    """``_plain`` of several columns at once: x float32 (..., k), ``log`` bool (k,) marks the
    ``LOG_FEATURES`` columns; the same float32 operations, element by element."""
    x = np.where(np.isfinite(x), x, np.float32(0.0))
    if log.any():
        x[..., log] = np.log1p(np.maximum(x[..., log], np.float32(0.0)))
    return x


def _columns(idx: list[int]) -> slice | np.ndarray:
    """Column positions ``idx`` as a slice when they are consecutive (a view, no gather), else as
    an index array."""
    if idx and idx == list(range(idx[0], idx[0] + len(idx))):
        return slice(idx[0], idx[0] + len(idx))
    return np.array(idx, np.intp)
