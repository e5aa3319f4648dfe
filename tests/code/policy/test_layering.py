"""The policy sits below the request path: it imports nothing from ``checkout_recs.serving`` (not
even for typing; it states what it reads in ``policy/inputs.py``), and the ledger's base module
imports none of the ledgers built on it."""

from __future__ import annotations

import ast
from pathlib import Path

import checkout_recs.policy

POLICY = Path(checkout_recs.policy.__file__).parent


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_policy_imports_nothing_from_serving():
    bad = {p.name: sorted(m for m in _imports(p) if m.startswith("checkout_recs.serving"))
           for p in sorted(POLICY.glob("*.py"))}
    assert not {k: v for k, v in bad.items() if v}


def test_ledger_base_imports_no_implementation():
    mods = _imports(POLICY / "ledger.py")
    assert not {m for m in mods if m.startswith("checkout_recs.policy.ledger_")}
