"""Import rules of the core package ``checkout_recs/``, checked on the source (``ast``, nothing imported).

1. **No platform, no face.** The core imports none of the platform libraries (kserve, kfp, feast,
   kubernetes, kubernetes_validate, evidently) and no face package (``cli``, ``inference``,
   ``components``, ``kfp_pipelines``, ``feature_repo``, ``monitoring``, ``benchmarks``,
   ``tests``), except through a named port: one module listed in ``PORTS`` whose docstring says it
   is the port to that package.
2. **No cycle** among the core's modules. Every import counts, wherever it is in the file (module
   level, inside a function, under ``TYPE_CHECKING``); importing ``a.b.c`` from outside package
   ``a.b`` also runs ``a/b/__init__.py``, so it counts as an import of ``a.b`` too.
3. **Layers.** The core's subpackages (and its top-level modules) sit in the layers of ``LAYERS``,
   lowest first. A module imports its own group and lower layers only: not upward, and not
   sideways into another group of its own layer. An edge that cannot go is listed in
   ``ALLOWED_EDGES`` and justified in the importing module's docstring.

``check_imports`` does the work; ``test_the_checker_reports_planted_violations`` shows it fails.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = "checkout_recs"

PLATFORMS = frozenset({"kserve", "kfp", "feast", "kubernetes", "kubernetes_validate", "evidently"})
FACES = frozenset(
    {
        "cli",
        "inference",
        "components",
        "kfp_pipelines",
        "feature_repo",
        "monitoring",
        "benchmarks",
        "tests",
    }
)

#: Groups of the core, lowest layer first. A group is a subpackage (``checkout_recs/<group>/``) or a
#: top-level module (``checkout_recs/<group>.py``). Groups in one layer do not import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"config", "contract", "storage", "tracking", "log_format"}
    ),  # settings, contract, stores, logs
    frozenset(
        {"data", "simulate", "features", "policy"}
    ),  # ingest; the simulator; features; the policy
    frozenset({"models"}),  # towers, ranker, student (features as inputs)
    frozenset({"retrieval"}),  # the index and candidates (embeds with the towers)
    frozenset({"serving"}),  # the request path: bundle, recommender, decisions
    frozenset({"evaluation", "synthetic"}),  # offline evaluation; synthetic inputs for benches
    frozenset({"deploy", "studies"}),  # rollout, gates, manifests; research studies
)

#: (module, imported package, why): the core's only ways to a platform library or a face. The
#: module's docstring must call itself the port to that package.
PORTS: tuple[tuple[str, str, str], ...] = (
    (
        "checkout_recs/deploy/kube.py",
        "kubernetes",
        "the rollout reads, patches and watches the InferenceService and the policy ConfigMap",
    ),
    (
        "checkout_recs/deploy/manifests.py",
        "kubernetes_validate",
        "core kinds of the rendered manifests are validated against the Kubernetes OpenAPI schemas",
    ),
)

#: (importing module, imported module, why): edges against the layer order that cannot go yet. The
#: importing module's docstring must name the imported module.
ALLOWED_EDGES: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Import:
    """One import in a module of the core: the module it names (dotted) and the line."""

    target: str
    line: int


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module of ``package`` under ``root`` (``__init__`` as the package)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> list[Import]:
    """Every import of the file, anywhere in it; ``from a import b`` names ``a.b`` when that is a module."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = name.split(".")[
                    : len(name.split(".")) - node.level + (1 if is_package else 0)
                ]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append(Import(base, node.lineno))
            out += [
                Import(f"{base}.{a.name}", node.lineno)
                for a in node.names
                if f"{base}.{a.name}" in modules
            ]
    return out


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _group(module: str) -> str | None:
    """The layer group of a core module: its subpackage or top-level module (None: the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def check_imports(
    root: Path,
    package: str = CORE,
    layers: Iterable[frozenset[str]] = LAYERS,
    ports: Iterable[tuple[str, str, str]] = PORTS,
    allowed_edges: Iterable[tuple[str, str, str]] = ALLOWED_EDGES,
    forbidden: frozenset[str] = PLATFORMS | FACES,
) -> list[str]:
    """Every violation of the three rules (module docstring) in ``root/package``, one line each."""
    modules = _modules(root, package)
    rank = {g: i for i, layer in enumerate(layers) for g in layer}
    port_of = {(m, pkg): why for m, pkg, why in ports}
    allowed = {(m, target): why for m, target, why in allowed_edges}
    used_ports: set[tuple[str, str]] = set()
    used_edges: set[tuple[str, str]] = set()
    problems: list[str] = []
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        rel = path.relative_to(root).as_posix()
        group = _group(name)
        if group is not None and group not in rank:
            problems.append(f"{rel}: group {group!r} is in no layer")
        for imp in _imports(path, name, modules):
            top = imp.target.split(".")[0]
            if top in forbidden:
                if (rel, top) in port_of:
                    used_ports.add((rel, top))
                else:
                    problems.append(
                        f"{rel}:{imp.line}: imports {imp.target} (platform or face; no port listed)"
                    )
                continue
            if imp.target not in modules or imp.target == name:
                continue
            edges[name].add(imp.target)
            # importing a.b.c from outside a.b runs a/b/__init__.py: an edge to it as well
            parts = imp.target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and not name.startswith(parent + "."):
                    edges[name].add(parent)
            target_group = _group(imp.target)
            if group is None or target_group is None or target_group == group:
                continue
            if group in rank and target_group in rank and rank[target_group] < rank[group]:
                continue
            if (rel, imp.target) in allowed:
                used_edges.add((rel, imp.target))
                continue
            way = "upward" if rank.get(target_group, -1) > rank.get(group, -1) else "sideways"
            problems.append(
                f"{rel}:{imp.line}: {way} import of {imp.target} ({group} -> {target_group})"
            )
    for cycle in _cycles(edges):
        problems.append("import cycle: " + " -> ".join(cycle))
    for (rel, pkg), why in port_of.items():
        doc = _docstring(root / rel) if (root / rel).exists() else ""
        if (rel, pkg) not in used_ports:
            problems.append(f"{rel}: listed as the port to {pkg} ({why}) but does not import it")
        if not (re.search(r"\bport\b", doc) and (pkg in doc or pkg.replace("_", "-") in doc)):
            problems.append(f"{rel}: the port to {pkg}, but its docstring does not say so")
    for (rel, target), why in allowed.items():
        doc = _docstring(root / rel) if (root / rel).exists() else ""
        if (rel, target) not in used_edges:
            problems.append(
                f"{rel}: allowed edge to {target} ({why}) is not used: drop it from the list"
            )
        if target not in doc:
            problems.append(
                f"{rel}: imports {target} against the layers; its docstring must say why"
            )
    return problems


def test_the_core_keeps_the_import_rules() -> None:
    problems = check_imports(ROOT)
    assert not problems, "\n".join(problems)


def test_every_group_of_the_core_is_in_exactly_one_layer() -> None:
    groups = {
        p.name for p in (ROOT / CORE).iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    groups |= {p.stem for p in (ROOT / CORE).glob("*.py") if p.stem != "__init__"}
    placed = [g for layer in LAYERS for g in layer]
    assert len(placed) == len(set(placed))
    assert groups == set(placed)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


CLEAN = {
    "core/__init__.py": "",
    "core/low/__init__.py": "",
    "core/low/a.py": "import json\n",
    "core/low/port.py": '"""The port to kserve: the one module that imports it."""\nimport kserve\n',
    "core/high/__init__.py": "",
    "core/high/b.py": "from core.low import a\n",
    "core/high/c.py": "from core.high import b\n\ndef f():\n    from core.low.a import x\n",
}
TOY_LAYERS = (frozenset({"low"}), frozenset({"high"}))
TOY_PORTS = (("core/low/port.py", "kserve", "toy"),)


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    _write(tmp_path, CLEAN)
    assert check_imports(tmp_path, "core", TOY_LAYERS, TOY_PORTS, ()) == []


def test_the_checker_reports_planted_violations(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **CLEAN,
            # a platform library outside the port, and a face, inside a function
            "core/low/a.py": "import json\nimport kserve\n\ndef f():\n    from cli.app import app\n",
            # upward, under TYPE_CHECKING
            "core/low/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.high.b import B\n",
            # a cycle through a function-level import
            "core/high/b.py": "from core.low import a\n\ndef g():\n    from core.high.c import f\n",
            # a port whose docstring does not say so
            "core/low/port.py": "import kserve\n",
            # a group in no layer
            "core/stray/__init__.py": "",
        },
    )
    problems = "\n".join(check_imports(tmp_path, "core", TOY_LAYERS, TOY_PORTS, ()))
    assert "core/low/a.py:2: imports kserve" in problems
    assert "core/low/a.py:5: imports cli.app" in problems
    assert "core/low/d.py:3: upward import of core.high.b (low -> high)" in problems
    assert "import cycle: core.high.b -> core.high.c" in problems
    assert "core/low/port.py: the port to kserve, but its docstring does not say so" in problems
    assert "group 'stray' is in no layer" in problems


def test_the_checker_reports_sideways_imports_and_cycles_through_a_package_init(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/one/__init__.py": "from core.one.m import M\n",
            "core/one/m.py": "from core.two.n import N\n",
            "core/two/__init__.py": "",
            "core/two/n.py": "def f():\n    from core.one.other import O\n",
            "core/one/other.py": "",
        },
    )
    problems = "\n".join(check_imports(tmp_path, "core", (frozenset({"one", "two"}),), (), ()))
    assert "sideways import of core.two.n (one -> two)" in problems
    # two.n -> one.other runs one/__init__, which imports one.m, which imports two.n
    assert "import cycle: core.one -> core.one.m -> core.two.n" in problems


def test_an_allowed_edge_needs_its_reason_in_the_docstring_and_a_use(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **CLEAN,
            "core/low/a.py": '"""Imports core.high.b: a reason."""\nfrom core.high.b import B\n',
        },
    )
    allowed = (
        ("core/low/a.py", "core.high.b", "toy"),
        ("core/low/port.py", "core.high.c", "stale"),
    )
    problems = check_imports(tmp_path, "core", TOY_LAYERS, TOY_PORTS, allowed)
    assert problems == [
        "import cycle: core.high.b -> core.low.a",
        "core/low/port.py: allowed edge to core.high.c (stale) is not used: drop it from the list",
        "core/low/port.py: imports core.high.c against the layers; its docstring must say why",
    ]
