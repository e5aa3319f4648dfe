"""The checked-in OpenAPI document is the one generated from the contract, and it is valid."""

from __future__ import annotations

import yaml

from checkout_recs import contract
from inference.openapi import OPENAPI_PATH, build_openapi, render


def test_the_checked_in_openapi_is_the_generated_one():
    assert OPENAPI_PATH.read_text() == render(build_openapi()), \
        "inference/openapi.yaml is stale: run `python -m inference.openapi --write`"


def test_the_document_states_the_contracts_ranges():
    doc = yaml.safe_load(OPENAPI_PATH.read_text())
    req = doc["components"]["schemas"]["PostCheckoutRequest"]["properties"]
    assert req["user_id"]["type"] == "integer" and req["user_id"]["maximum"] == contract.ID_MAX
    assert req["purchased_item_ids"]["maxItems"] == contract.MAX_BASKET_ITEMS
    assert req["request_id"]["anyOf"][0]["pattern"] == contract.REQUEST_ID_PATTERN


def test_schemathesis_loads_both_operations():
    import schemathesis

    schema = schemathesis.openapi.from_path(str(OPENAPI_PATH))
    ops = {op.ok().label for op in schema.get_all_operations()}
    assert ops == {"POST /v1/models/checkout-recs:predict", "POST /v2/models/checkout-recs/infer"}
