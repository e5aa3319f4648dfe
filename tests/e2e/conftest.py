"""End-to-end fixtures shared across files: one tiny training-pipeline run per test session.

The run is the real thing (kfp.local SubprocessRunner over every component: simulate → ingest →
label → features → Feast apply/materialize → training set → train → index → evaluate → register),
on a marketplace small enough to finish in a minute or two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_e2e import TINY_SIM


@pytest.fixture(scope="session")
def training_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``run_local("training", ...)``'s summary plus ``out`` (the run folder)."""
    from kfp_pipelines.local import run_local

    out = tmp_path_factory.mktemp("training_pipeline")
    summary = run_local("training", out, {"sim_config_json": TINY_SIM, "seed": 11})
    return {"out": out, **summary}


@pytest.fixture(scope="session")
def training_run_raw(training_run: dict[str, Any]) -> Path:
    """The raw tables the run's simulate step wrote."""
    hits = sorted(Path(training_run["pipeline_root"]).glob("*/simulate-op/raw"))
    assert hits, "the training run left no raw tables"
    return hits[-1]
