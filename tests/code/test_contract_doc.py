"""docs/data-contract.md documents every column of every schema and model in contract.py."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from checkout_recs import contract

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-contract.md"


def _sections(text: str) -> dict[str, str]:
    """{heading's first back-quoted name: body up to the next heading}."""
    parts = re.split(r"^#{2,3} ", text, flags=re.M)
    out = {}
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        m = re.search(r"`([A-Za-z_]+)`", heading)
        if m:
            out[m.group(1)] = body
    return out


def _documented(body: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", body, flags=re.M))


def test_every_schema_column_is_documented_in_its_section() -> None:
    sections = _sections(DOC.read_text())
    schemas = {
        n: s
        for n, s in vars(contract).items()
        if isinstance(s, pa.Schema) and n.isupper() and n != "TS"
    }
    assert {"LISTINGS", "IMPRESSIONS", "QUARANTINE", "USER_FEATURES"} <= set(schemas)
    for name, schema in schemas.items():
        assert name in sections, f"docs/data-contract.md has no section for {name}"
        missing = set(contract.field_names(schema)) - _documented(sections[name])
        assert not missing, f"{name}: columns not documented: {sorted(missing)}"


def test_every_request_response_field_is_documented() -> None:
    sections = _sections(DOC.read_text())
    models = {
        n: m
        for n, m in vars(contract).items()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == contract.__name__
    }
    assert {"PostCheckoutRequest", "PostCheckoutResponse", "RecommendedItem"} <= set(models)
    for name, model in models.items():
        assert name in sections, f"docs/data-contract.md has no section for {name}"
        missing = set(model.model_fields) - _documented(sections[name])
        assert not missing, f"{name}: fields not documented: {sorted(missing)}"


def test_the_doc_names_no_column_the_contract_lacks() -> None:
    sections = _sections(DOC.read_text())
    for name, schema in {
        n: s for n, s in vars(contract).items() if isinstance(s, pa.Schema) and n.isupper()
    }.items():
        if name in sections:
            extra = _documented(sections[name]) - set(contract.field_names(schema))
            assert not extra, f"{name}: documented but not in the contract: {sorted(extra)}"
