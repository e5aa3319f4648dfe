"""What a canary ramp is told and what it reports: the plan, the step records, the result, and
the interfaces of the sources it reads (metrics, GMV) and of the registry it tells.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from checkout_recs.deploy.metrics import VariantWindow

if TYPE_CHECKING:
    from checkout_recs.deploy.attribution import GmvReading


class MetricsSource(Protocol):
    """Per-revision guardrail figures over the last ``window_s`` seconds (``PrometheusQuerySource``)."""

    def window(self, window_s: float) -> dict[str, VariantWindow]: ...


class GmvSource(Protocol):
    """Canary vs champion GMV per session (``deploy.attribution.DecisionLogGmv``)."""

    def compare(self, candidate_uri: str, champion_uri: str, since: dt.datetime) -> GmvReading: ...


class RegistryHook(Protocol):
    """Told when a ramp ends (``tracking.MlflowAliases``); each returns a note for the log."""

    def promoted(self, bundle_uri: str) -> str: ...

    def rolled_back(self, bundle_uri: str, reason: str) -> str: ...


class RampPlan(BaseModel):
    """Traffic steps and timings of a ramp (seconds)."""

    steps: tuple[int, ...] = Field(
        default=(5, 25, 50, 100), description="Canary traffic percent per step."
    )
    hold_s: float = Field(
        default=600.0, ge=0, description="Healthy observation needed before the next step."
    )
    poll_s: float = Field(default=30.0, gt=0, description="Seconds between guardrail queries.")
    max_hold_s: float = Field(
        default=1800.0, ge=0, description="Longest wait for conclusive metrics."
    )
    ready_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest wait for the controller."
    )
    gmv_required_from: int = Field(
        default=50,
        ge=0,
        le=100,
        description=(
            "With a GMV source, steps at or above this percent hold until GMV per session is measurable."
        ),
    )


class StepRecord(BaseModel):
    """What happened at one traffic step."""

    percent: int
    action: str
    summary: str
    canary_revision: str | None = None
    metrics: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
    at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


class RolloutResult(BaseModel):
    """Outcome of ``Rollout.run``."""

    outcome: Literal["promoted", "rolled_back", "failed"]
    reason: str
    candidate_uri: str
    champion_uri: str | None
    layout: str | None = Field(
        default=None,
        description=(
            "collocated (one revision serves the pair), split (transformer and predictor split apart) "
            "or predictor-only: deploy.isvc.layout of the InferenceService when the ramp started."
        ),
    )
    steps: list[StepRecord] = Field(default_factory=list)


# --------------------------------------------------------------------------------------- rollout
