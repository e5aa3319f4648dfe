"""The data contract: schemas are consistent, the request model refuses bad input."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pydantic import ValidationError

from checkout_recs import contract as c


def test_every_raw_table_has_a_primary_key_made_of_its_columns() -> None:
    assert set(c.PRIMARY_KEYS) == set(c.RAW_TABLES)
    for table, key in c.PRIMARY_KEYS.items():
        names = c.field_names(c.RAW_TABLES[table])
        assert set(key) <= set(names), table
        for col in key:
            assert not c.RAW_TABLES[table].field(col).nullable, (table, col)


def test_timestamps_are_utc_microseconds() -> None:
    for name, schema in {**c.RAW_TABLES, **c.FEATURE_TABLES}.items():
        for f in schema:
            if pa.types.is_timestamp(f.type):
                assert f.type == c.TS, (name, f.name)


def test_feature_tables_carry_an_event_timestamp_and_their_entity() -> None:
    entities = {
        "user": ["user_id"],
        "listing": ["listing_id"],
        "seller": ["seller_id"],
        "category_pair": ["category_a", "category_b"],
    }
    for view, keys in entities.items():
        names = c.field_names(c.FEATURE_TABLES[view])
        assert "event_timestamp" in names
        assert names[: len(keys)] == keys


def test_labelled_impressions_extend_impressions() -> None:
    base = c.field_names(c.IMPRESSIONS)
    assert c.field_names(c.LABELLED_IMPRESSIONS)[: len(base)] == base


def test_empty_table_has_schema() -> None:
    t = c.empty_table(c.LISTINGS)
    assert t.num_rows == 0 and t.schema.equals(c.LISTINGS)


def _req(**kw: object) -> c.PostCheckoutRequest:
    base: dict[str, object] = {"user_id": 3, "purchased_item_ids": [1, 2], "region": "us-east"}
    base.update(kw)
    return c.PostCheckoutRequest.model_validate(base)


def test_request_accepts_a_valid_checkout_and_defaults() -> None:
    r = _req()
    assert r.device == "web" and r.timestamp is None
    assert len(r.resolved_request_id()) == 32
    assert _req(request_id="abc").resolved_request_id() == "abc"


def test_naive_timestamps_become_utc() -> None:
    r = _req(timestamp=dt.datetime(2026, 1, 1, 12))
    assert r.timestamp is not None and r.timestamp.tzinfo == dt.UTC


@pytest.mark.parametrize(
    "bad",
    [
        {"user_id": -1},
        {"user_id": "abc"},
        {"purchased_item_ids": [1, -5]},
        {"purchased_item_ids": list(range(c.MAX_BASKET_ITEMS + 1))},
        {"region": ""},
        {"region": "US East"},
        {"device": "fax"},
        {"surprise": 1},
    ],
)
def test_request_refuses_bad_input_with_a_reason(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as err:
        _req(**bad)
    assert err.value.errors()[0]["msg"]


def _item(i: int) -> dict[str, object]:
    return {
        "listing_id": i,
        "slot": i % 6,
        "score": 1.0,
        "propensity": 0.5,
        "source": "ann",
        "reason": "popular in your region",
    }


def test_response_must_hold_exactly_six_distinct_items() -> None:
    ok = c.PostCheckoutResponse(request_id="r", items=[_item(i) for i in range(6)], policy="ranker")
    assert len(ok.items) == c.SLATE_SIZE
    with pytest.raises(ValidationError):
        c.PostCheckoutResponse(request_id="r", items=[_item(i) for i in range(5)], policy="ranker")
    with pytest.raises(ValidationError):
        c.PostCheckoutResponse(request_id="r", items=[_item(0)] * 6, policy="ranker")
    with pytest.raises(ValidationError):
        bad = [_item(i) for i in range(6)]
        bad[0]["propensity"] = 0.0
        c.PostCheckoutResponse(request_id="r", items=bad, policy="ranker")
