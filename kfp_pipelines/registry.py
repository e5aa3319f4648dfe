"""The pipelines this project ships, by name, with their recommended schedules."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPILED_DIR = Path(__file__).parent / "compiled"


@dataclass(frozen=True)
class PipelineEntry:
    """Where a pipeline function lives and how often it should run on a cluster."""

    name: str
    target: str  # "module:function"
    schedule: str | None  # cron (KFP's six fields: seconds first), None = on demand
    description: str

    def load(self) -> Any:
        """Import and return the ``@dsl.pipeline`` function (imports kfp and the components)."""
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)

    @property
    def compiled_path(self) -> Path:
        """``kfp_pipelines/compiled/<name>.yaml``."""
        return COMPILED_DIR / f"{self.name}.yaml"


PIPELINES: dict[str, PipelineEntry] = {
    "training": PipelineEntry(
        "training",
        "kfp_pipelines.training:training_pipeline",
        "0 0 3 * * 1",
        "logs → labels → features → train → index → evaluate → gate → canary (weekly)",
    ),
    "index_refresh": PipelineEntry(
        "index_refresh",
        "kfp_pipelines.index_refresh:index_refresh_pipeline",
        "0 5 * * * *",
        "new listings embedded and added, sold removed (hourly)",
    ),
    "monitoring": PipelineEntry(
        "monitoring",
        "kfp_pipelines.monitoring:monitoring_pipeline",
        "0 0 6 * * *",
        "drift report on features → drift flag (daily)",
    ),
}


def get(name: str) -> PipelineEntry:
    """The entry called ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise KeyError(
            f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}"
        ) from None
