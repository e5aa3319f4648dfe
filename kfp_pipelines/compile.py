"""Compile pipelines to KFP v2 YAML under ``kfp_pipelines/compiled/`` and detect stale files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kfp_pipelines.registry import PIPELINES, get


def compile_pipeline(name: str, out_path: Path | None = None) -> Path:
    """Compile pipeline ``name`` to ``out_path`` (default ``compiled/<name>.yaml``); returns the path."""
    from kfp import compiler  # lazy: kfp costs ~1 s and only pipeline compile/run/submit need it

    entry = get(name)
    out_path = Path(out_path or entry.compiled_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(entry.load(), str(out_path))
    return out_path


def compile_all(out_dir: Path | None = None) -> list[Path]:
    """Compile every pipeline; returns the written paths."""
    return [
        compile_pipeline(n, (Path(out_dir) / f"{n}.yaml") if out_dir else None)
        for n in sorted(PIPELINES)
    ]


def stale(name: str) -> str | None:
    """Why ``compiled/<name>.yaml`` differs from a fresh compile, or None when it is current."""
    committed = get(name).compiled_path
    if not committed.exists():
        return f"{committed} is missing: run `checkout-recs pipeline compile --all`"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(name, Path(tmp) / f"{name}.yaml").read_text()
    if fresh != committed.read_text():
        return f"{committed} is stale: run `checkout-recs pipeline compile --all`"
    return None
