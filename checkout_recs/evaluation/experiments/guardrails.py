"""Guardrails that stop a ramp: latency, error rate, fallback rate, GMV floor.

The canary rollout calls ``evaluate_guardrails(metrics, config)`` at every step and obeys the
decision: ``continue`` (ramp on), ``hold`` (stay at this traffic share: too little data or a
doubtful GMV reading) or ``rollback`` (send all traffic back to the champion). Operational limits
(latency, errors, fallbacks) roll back on the point value; the GMV floor rolls back only when the
challenger is *confidently* below it (the upper bound of the GMV-ratio interval is under the
floor) and holds when the point estimate is below but the interval still reaches the floor.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GuardrailConfig(BaseModel):
    """Limits of a ramp; documented field by field, loadable from YAML or JSON."""

    model_config = ConfigDict(extra="forbid")

    max_p95_latency_ms: float = Field(
        default=100.0, gt=0, description="p95 page latency budget, ms."
    )
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Share of 5xx answers.")
    max_fallback_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Share of answers served by the deterministic fallback.",
    )
    gmv_floor_ratio: float = Field(
        default=0.97,
        gt=0,
        description="Challenger GMV per session / champion's must stay above this.",
    )
    min_requests: int = Field(
        default=1_000, ge=0, description="Below this many challenger requests: hold."
    )


class GuardrailMetrics(BaseModel):
    """What the canary measured for the challenger over the last window."""

    requests: int = Field(ge=0)
    p95_latency_ms: float = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)
    fallback_rate: float = Field(ge=0, le=1)
    gmv_ratio: float | None = Field(
        default=None, ge=0, description="Challenger/champion GMV per session."
    )
    gmv_ratio_upper: float | None = Field(
        default=None,
        ge=0,
        description="Upper bound of the GMV ratio's interval (None: point only).",
    )


class Breach(BaseModel):
    """One guardrail outside its limit."""

    name: str
    value: float
    limit: float
    severity: Literal["hold", "rollback"]
    reason: str


class GuardrailDecision(BaseModel):
    """What the ramp must do, and why."""

    action: Literal["continue", "hold", "rollback"]
    passed: bool
    breaches: list[Breach]
    checked_at: str

    def summary(self) -> str:
        """One line for logs and the rollout's status."""
        if not self.breaches:
            return "continue: every guardrail within limits"
        return f"{self.action}: " + "; ".join(b.reason for b in self.breaches)


def _operational(m: GuardrailMetrics, c: GuardrailConfig) -> list[Breach]:
    checks = (
        ("p95_latency_ms", m.p95_latency_ms, c.max_p95_latency_ms, "ms"),
        ("error_rate", m.error_rate, c.max_error_rate, ""),
        ("fallback_rate", m.fallback_rate, c.max_fallback_rate, ""),
    )
    return [
        Breach(name=n, value=v, limit=lim, severity="rollback", reason=f"{n} {v:g}{u} > {lim:g}{u}")
        for n, v, lim, u in checks
        if v > lim
    ]


def _gmv(m: GuardrailMetrics, c: GuardrailConfig) -> list[Breach]:
    if m.gmv_ratio is None or m.gmv_ratio >= c.gmv_floor_ratio:
        return []
    confident = m.gmv_ratio_upper is not None and m.gmv_ratio_upper < c.gmv_floor_ratio
    reason = f"GMV ratio {m.gmv_ratio:.3f} < floor {c.gmv_floor_ratio:.3f}" + (
        f" (upper bound {m.gmv_ratio_upper:.3f} too)"
        if confident
        else " (interval still reaches the floor)"
    )
    sev: Literal["hold", "rollback"] = "rollback" if confident else "hold"
    return [
        Breach(
            name="gmv_floor",
            value=m.gmv_ratio,
            limit=c.gmv_floor_ratio,
            severity=sev,
            reason=reason,
        )
    ]


def evaluate_guardrails(
    metrics: GuardrailMetrics | dict, config: GuardrailConfig | dict | None = None
) -> GuardrailDecision:
    """Decide whether a ramp continues, holds or rolls back.

    Parameters
    ----------
    metrics
        ``GuardrailMetrics`` or a dict of its fields (latency in ms, rates in [0, 1]).
    config
        ``GuardrailConfig`` or a dict; ``None`` uses the defaults.

    Returns
    -------
    GuardrailDecision
        ``rollback`` if any operational limit is exceeded or GMV is confidently under the floor;
        else ``hold`` if the challenger has fewer than ``min_requests`` requests or GMV is
        doubtfully under the floor; else ``continue``. Invalid metrics raise
        ``pydantic.ValidationError`` (a caller must not ramp on garbage).
    """
    m = GuardrailMetrics.model_validate(metrics)
    c = GuardrailConfig.model_validate(config or {})
    breaches = _operational(m, c) + _gmv(m, c)
    if m.requests < c.min_requests:
        breaches.append(
            Breach(
                name="min_requests",
                value=m.requests,
                limit=c.min_requests,
                severity="hold",
                reason=f"only {m.requests} requests (< {c.min_requests})",
            )
        )
    action: Literal["continue", "hold", "rollback"] = "continue"
    if any(b.severity == "rollback" for b in breaches):
        action = "rollback"
    elif breaches:
        action = "hold"
    return GuardrailDecision(
        action=action,
        passed=action == "continue",
        breaches=breaches,
        checked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
