"""The one function that turns a frame into the ranker's input matrix.

Training (rows of the training set) and serving (candidates joined with user features, the item
snapshot and on-demand features) both call :func:`ranker_matrix`, so the two can never disagree
on a column, a transform or an order.

Feature names are the numeric columns of the contract's user / listing / seller views (ids,
``price`` and the pooled-level rates ``LEVEL_COLUMNS`` excluded), the features engineer's ``on_demand.REQUEST_FEATURES`` and
``INTERACTION_FEATURES``, and a few features *derived* here (``log_price``, ``hour_sin``,
``device_ios``, ``same_top_category_as_user`` ...). Serving frames carry view columns by their
contract names; the training set (``features.training``) prefixes them (``user_n_purchases``,
``listing_ctr_lift``): both are accepted, the exact name first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from checkout_recs import contract


def _numeric_fields(schema: pa.Schema, skip: frozenset[str]) -> list[str]:
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    return [f.name for f in schema if any(t(f.type) for t in numeric) and f.name not in skip]


#: Identifiers are not quantities: the ranker sees categories only through match features.
_ID_COLUMNS = frozenset(
    {"user_id", "listing_id", "seller_id", "category_id", "top_category_id", "price"}
)

#: Pooled levels the ranker does not take: ``ctr_smoothed`` / ``cvr_smoothed`` are mostly the
#: day's pooled rate (the snapshot's prior dominates a listing's few views or clicks), so their
#: values sort rows by day and leave the training range on later days. The ranker takes
#: ``ctr_lift`` / ``cvr_lift`` instead: the same listing's rate against that prior.
LEVEL_COLUMNS = frozenset({"ctr_smoothed", "cvr_smoothed"})

#: Numeric columns of the contract's feature views (``price`` enters as ``log_price``).
VIEW_FEATURES: list[str] = (
    _numeric_fields(contract.USER_FEATURES, _ID_COLUMNS)
    + _numeric_fields(contract.LISTING_FEATURES, _ID_COLUMNS | LEVEL_COLUMNS)
    + _numeric_fields(contract.SELLER_FEATURES, _ID_COLUMNS)
)

#: The training set (``features.training``) prefixes view columns once: ``user_<col>``,
#: ``listing_<col>`` (seller columns already start with ``seller_``).
_PREFIXES = ("listing_", "user_")


def _source(frame: pd.DataFrame, name: str) -> str | None:
    """Column of ``frame`` holding feature ``name``: the name itself (serving frames), or the
    training set's prefixed view column."""
    if name in frame.columns:
        return name
    for p in _PREFIXES:
        if p + name in frame.columns:
            return p + name
    return None


def _hour(frame: pd.DataFrame) -> np.ndarray:
    if "hour" in frame:
        return frame["hour"].to_numpy(np.float32)
    if "event_timestamp" in frame:
        ts = pd.to_datetime(frame["event_timestamp"], utc=True)
        return (ts.dt.hour + ts.dt.minute / 60.0).to_numpy(np.float32)
    return np.zeros(len(frame), np.float32)


def _col(frame: pd.DataFrame, name: str, default: float = 0.0) -> np.ndarray:
    src = _source(frame, name)
    if src is not None:
        return pd.to_numeric(frame[src], errors="coerce").fillna(default).to_numpy(np.float32)
    return np.full(len(frame), default, np.float32)


def _user_top(frame: pd.DataFrame) -> np.ndarray:
    col = "user_top_category_id"
    if col in frame:
        return pd.to_numeric(frame[col], errors="coerce").fillna(-3).to_numpy(np.float32)
    return np.full(len(frame), -3, np.float32)


#: Features computed here from other columns when the frame does not carry them.
DERIVED: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "log_price": lambda f: np.log1p(_col(f, "price")),
    "log_expected_take": lambda f: np.log1p(_col(f, "price") * _col(f, "take_rate")),
    "hour_sin": lambda f: np.sin(2 * np.pi * _hour(f) / 24.0).astype(np.float32),
    "hour_cos": lambda f: np.cos(2 * np.pi * _hour(f) / 24.0).astype(np.float32),
    "device_ios": lambda f: (
        (f["device"].to_numpy() == "ios").astype(np.float32)
        if "device" in f
        else np.zeros(len(f), np.float32)
    ),
    "device_android": lambda f: (
        (f["device"].to_numpy() == "android").astype(np.float32)
        if "device" in f
        else np.zeros(len(f), np.float32)
    ),
    "price_to_user_avg": lambda f: np.log1p(_col(f, "price")) - np.log1p(_col(f, "avg_price_paid")),
    "same_top_category_as_user": lambda f: (_col(f, "top_category_id", -2) == _user_top(f)).astype(
        np.float32
    ),
}

#: Heavy-tailed counts and amounts get log1p before normalisation.
LOG_FEATURES = frozenset(
    {
        "n_purchases",
        "avg_price_paid",
        "last_price_paid",
        "days_since_last_purchase",
        "price",
        "age_days",
        "views_decayed",
        "clicks_decayed",
        "purchases_decayed",
        "seller_age_days",
        "seller_sales_velocity",
        "basket_price",
        "basket_max_price",
    }
)


def _on_demand_names() -> list[str]:
    try:
        from checkout_recs.features import on_demand  # owned by the features engineer
    except ImportError:
        return []
    names: list[str] = []
    for attr in ("REQUEST_FEATURES", "INTERACTION_FEATURES"):
        names.extend(str(n) for n in getattr(on_demand, attr, ()))
    return names


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for n in names:
        seen.setdefault(n, None)
    return list(seen)


#: Every feature the ranker may use, in a fixed order. A trained model records the subset it
#: was trained on (``RankerModel.feature_names``); serving passes that list to ``ranker_matrix``.
RANKER_FEATURES: list[str] = _unique(VIEW_FEATURES + list(DERIVED) + _on_demand_names())


def available_features(frame: pd.DataFrame, names: Sequence[str] = RANKER_FEATURES) -> list[str]:
    """The names in ``names`` that ``frame`` carries or that can be derived from it.

    A derived feature counts as available when the columns it needs are present (probed on the
    first row). Returns names in the order of ``names``.
    """
    out = []
    for n in names:
        if _source(frame, n) is not None or n in DERIVED and _derivable(frame, n):
            out.append(n)
    return out


_DERIVED_NEEDS = {
    "log_price": ("price",),
    "log_expected_take": ("price", "take_rate"),
    "hour_sin": ("event_timestamp|hour",),
    "hour_cos": ("event_timestamp|hour",),
    "device_ios": ("device",),
    "device_android": ("device",),
    "price_to_user_avg": ("price", "avg_price_paid"),
    "same_top_category_as_user": ("top_category_id", "user_top_category_id"),
}


def _derivable(frame: pd.DataFrame, name: str) -> bool:
    return all(
        any(_source(frame, a) is not None for a in need.split("|")) for need in _DERIVED_NEEDS[name]
    )


def ranker_matrix(frame: pd.DataFrame, names: Sequence[str] = RANKER_FEATURES) -> np.ndarray:
    """Build the ranker's input matrix from ``frame``.

    Parameters
    ----------
    frame : pandas.DataFrame, n rows
        Training-set rows or serving candidates joined with their features.
    names : sequence of str, length d
        Feature names in model order (``RankerModel.feature_names``).

    Returns
    -------
    numpy.ndarray, float32, shape (n, d)
        Raw (un-normalised) features; ``LOG_FEATURES`` are log1p-transformed, missing values
        and non-finite entries are 0. The model applies its own stored normalisation.

    Raises
    ------
    KeyError
        When a name is neither a column of ``frame`` nor derivable from it.
    """
    n = len(frame)
    out = np.empty((n, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        if _source(frame, name) is not None:
            col = _col(frame, name)
            if name in LOG_FEATURES:
                col = np.log1p(np.maximum(col, 0.0))
        elif name in DERIVED and _derivable(frame, name):
            col = DERIVED[name](frame)
        else:
            raise KeyError(
                f"ranker feature {name!r} is missing from the frame and cannot be derived"
            )
        out[:, j] = col
    out[~np.isfinite(out)] = 0.0
    return out


def ranker_columns(columns: Sequence[str], names: Sequence[str] = RANKER_FEATURES) -> list[str]:
    """The columns among ``columns`` that ``ranker_matrix`` reads for ``available_features``.

    Parameters
    ----------
    columns : sequence of str
        Column names of a frame or parquet schema (e.g. the training set's).
    names : sequence of str
        Candidate feature names (default: every ``RANKER_FEATURES`` name).

    Returns
    -------
    list of str, in the order of ``columns``: every column that holds an available feature or
    that a derived feature may read (e.g. ``event_timestamp`` or ``hour`` for ``hour_sin``). A
    frame of these columns only gives the same ``available_features`` and ``ranker_matrix``.
    """
    frame = pd.DataFrame(columns=list(columns))
    used: set[str] = set()
    for name in available_features(frame, names):
        src = _source(frame, name)
        if src is not None:
            used.add(src)
            continue
        for need in _DERIVED_NEEDS[name]:
            used.update(s for a in need.split("|") if (s := _source(frame, a)) is not None)
    return [c for c in columns if c in used]
