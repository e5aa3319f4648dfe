"""The checked-in OpenAPI document is the one generated from the contract, and it is valid."""

from __future__ import annotations

import yaml

from checkout_recs import contract
from inference.openapi import OPENAPI_PATH, build_openapi, render


def test_the_checked_in_openapi_is_the_generated_one():
    assert OPENAPI_PATH.read_text() == render(build_openapi()), (
        "inference/openapi.yaml is stale: run `python -m inference.openapi --write`"
    )


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


# ------------------------------------------------------------------ JSON Schemas and examples

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import jsonschema  # noqa: E402
import pytest  # noqa: E402

from inference.openapi import SCHEMA_DIR, build_json_schemas, render_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "inference" / "examples"
INTEGRATING = ROOT / "docs" / "integrating.md"


def test_the_checked_in_json_schemas_are_the_generated_ones():
    schemas = build_json_schemas()
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(schemas), (
        "inference/schemas/ holds other files than the generator writes"
    )
    for name, schema in schemas.items():
        assert (SCHEMA_DIR / name).read_text() == render_json(schema), (
            f"inference/schemas/{name} is stale: run `python -m inference.openapi --write`"
        )
        jsonschema.Draft202012Validator.check_schema(schema)


def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


def _kind(example: Path) -> str:
    stem = example.stem
    if stem.startswith("error-"):
        return "error"
    proto = stem.split("-")[0]
    return f"{proto}-{'response' if 'response' in stem else 'request'}"


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_example_validates_against_its_schema(example):
    body = json.loads(example.read_text())
    if example.stem.endswith("invalid"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, _schema(_kind(example)))
    else:
        jsonschema.validate(body, _schema(_kind(example)))


def test_the_response_examples_keep_the_contracts_promises():
    v1 = json.loads((EXAMPLES / "v1-response.json").read_text())
    for answer in (
        v1["predictions"]
        + json.loads((EXAMPLES / "v1-fallback-response.json").read_text())["predictions"]
    ):
        contract.PostCheckoutResponse.model_validate(answer)  # six distinct listings, ranges
    v2 = {o["name"]: o for o in json.loads((EXAMPLES / "v2-response.json").read_text())["outputs"]}
    assert (
        v2["item_ids"]["shape"] == [contract.SLATE_SIZE]
        and len(set(v2["item_ids"]["data"])) == contract.SLATE_SIZE
    )
    assert (
        json.loads((EXAMPLES / "v1-request.json").read_text())["instances"][0]["request_id"]
        == v1["predictions"][0]["request_id"]
    )


def test_the_integration_guide_quotes_the_example_files_exactly():
    text = INTEGRATING.read_text()
    quoted = re.findall(r"<!-- example: (\S+) -->\n```json\n(.*?)```", text, flags=re.S)
    assert {p for p, _ in quoted} == {
        f"inference/examples/{p.name}"
        for p in EXAMPLES.glob("*.json")
        if not p.stem.endswith(("invalid", "unknown-user"))
    }
    for path, block in quoted:
        assert json.loads(block) == json.loads((ROOT / path).read_text()), (
            f"docs/integrating.md quotes {path} differently: copy the file's content into the block"
        )
    for path in re.findall(r"@(inference/examples/\S+\.json)", text):
        assert (ROOT / path).is_file(), path
