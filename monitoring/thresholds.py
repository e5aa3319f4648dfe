"""Typed drift thresholds, loadable from YAML (``monitoring/thresholds.yaml``).

One object drives the CLI, the monitoring pipeline step and the tests. Methods are Evidently
stat-test names (``wasserstein``, ``jensenshannon``, ``psi``, ``ks``, ``chisquare``, ...). Distance
methods flag drift when the score is *at or above* the threshold; p-value methods (``ks``,
``chisquare``, ``z``, ...) when it is *below*. Evidently applies the direction; we only choose.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_THRESHOLDS_PATH = Path(__file__).with_name("thresholds.yaml")


class DriftThresholds(BaseModel):
    """When a column drifts and when the whole table does.

    The sample-size-robust distances (Wasserstein, Jensen-Shannon) are the default: with p-value
    tests a week of real traffic (10^5 rows) flags every column for differences nobody cares about.
    """

    model_config = ConfigDict(extra="forbid")

    num_method: str = Field(default="wasserstein", description="Stat test for numerical columns.")
    num_threshold: float = Field(
        default=0.1,
        gt=0,
        description="Numerical drift threshold (normed Wasserstein: in std units).",
    )
    cat_method: str = Field(
        default="jensenshannon", description="Stat test for categorical columns."
    )
    cat_threshold: float = Field(
        default=0.1, gt=0, le=1, description="Categorical drift threshold."
    )
    per_column_method: dict[str, str] = Field(
        default_factory=dict, description="Method overrides by column name."
    )
    per_column_threshold: dict[str, float] = Field(
        default_factory=dict, description="Threshold overrides by column name."
    )
    drift_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Table verdict: drift when the share of drifted columns is >= this.",
    )
    critical_columns: list[str] = Field(
        default_factory=list,
        description="Columns whose drift alone confirms drift (e.g. the ranker score).",
    )
    max_categories: int = Field(
        default=50, ge=2, description="A string column with more distinct values is not a category."
    )
    max_rows: int = Field(
        default=50_000, ge=100, description="Each side is sampled down to this many rows (seeded)."
    )
    seed: int = Field(default=7, description="Seed of the row sample.")


def load_thresholds(path: Path | str | None = None) -> DriftThresholds:
    """Read thresholds from YAML.

    Parameters
    ----------
    path
        A YAML file whose top level maps field names to values; ``None`` reads
        ``monitoring/thresholds.yaml``. A missing default file gives the defaults.

    Returns
    -------
    DriftThresholds
        Validated thresholds. Raises ``FileNotFoundError`` for a missing explicit file and
        ``pydantic.ValidationError`` for unknown fields or out-of-range values.
    """
    p = Path(path) if path is not None else DEFAULT_THRESHOLDS_PATH
    if not p.exists():
        if path is None:
            return DriftThresholds()
        raise FileNotFoundError(f"thresholds file not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    return DriftThresholds.model_validate(data.get("drift", data))
