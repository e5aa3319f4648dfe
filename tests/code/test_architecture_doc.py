"""docs/architecture.md's table of core functions names real functions with their real parameters.

Each row's ``module.function(p1: T, p2 = d, *, k = v) -> R`` is parsed; the function is imported and
its parameter names, in order, must equal the documented ones (types and defaults are prose)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
ROW = re.compile(r"^\| [^|]+ \| `(?P<path>[a-z_.]+)\.(?P<fn>[A-Za-z_]+)\((?P<params>[^`]*)\) ->")


def documented() -> list[tuple[str, str, list[str]]]:
    """(module path, function name, parameter names) of every signature row of the table."""
    text = DOC.read_text().split("## Core functions", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            params = [p.strip().split(":")[0].split("=")[0].strip() for p in _split(m["params"])]
            rows.append((m["path"], m["fn"], [p for p in params if p and p != "*"]))
    return rows


def _split(params: str) -> list[str]:
    """Split on the commas that are not inside brackets."""
    out, depth, cur = [], 0, ""
    for ch in params.replace("\\|", "|"):
        depth += ch in "[(" and 1 or 0
        depth -= ch in "])" and 1 or 0
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


def _resolve(path: str, fn: str):
    top = path.split(".")[0]
    module = path if top in ("monitoring", "feature_repo") else f"checkout_recs.{path}"
    return getattr(importlib.import_module(module), fn)


def test_the_table_has_the_stages():
    names = {fn for _, fn, _ in documented()}
    assert {
        "run_simulation",
        "ingest",
        "build_labels",
        "train_all",
        "build_index",
        "assemble_bundle",
        "evaluate_run",
        "register_run",
        "drift_report",
    } <= names


@pytest.mark.parametrize(("path", "fn", "params"), documented(), ids=lambda v: str(v)[:40])
def test_documented_signature_matches_the_code(path: str, fn: str, params: list[str]):
    actual = [n for n in inspect.signature(_resolve(path, fn)).parameters if n != "self"]
    assert params == actual, f"{path}.{fn}: documented {params}, code {actual}"
