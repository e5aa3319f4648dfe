"""Typed settings shared by the CLI, the KFP components and the servers.

Every field can be set by an environment variable ``CHECKOUT_RECS_<FIELD>`` (upper case), so
one object drives a laptop run, a pipeline step and a pod. Paths are relative to the working
directory unless absolute.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Where things live and which backends are used."""

    artifact_root: str = Field(
        default="artifacts", description="Artifact store root: a folder, or s3://bucket/prefix."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (tests, MinIO); None means AWS."
    )
    feature_repo: Path = Field(default=Path("feature_repo"), description="Feast repository folder.")
    feature_env: str = Field(
        default="embedded", description="Feast environment: 'embedded' (SQLite) or 'production'."
    )
    mlflow_tracking_uri: str = Field(
        default="sqlite:///artifacts/mlflow.db", description="MLflow tracking and registry URI."
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis for production stores."
    )
    inventory_backend: str = Field(default="memory", description="'memory' (embedded) or 'redis'.")
    seed: int = Field(default=7, description="Seed for everything stochastic.")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, overridden by ``CHECKOUT_RECS_*`` variables, overridden by ``overrides``."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"CHECKOUT_RECS_{name.upper()}")
            if env is not None:
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
