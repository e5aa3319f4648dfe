"""Progressive canary rollout of a serving bundle on KServe, with guardrails and self-rollback.

KServe keeps the last fully rolled-out revision of each component and splits traffic with
``canaryTrafficPercent``. The ramp:

1. patch ``STORAGE_URI`` of every component's containers to the new bundle and set
   ``canaryTrafficPercent`` to the first step (5);
2. watch the InferenceService until the controller reports the split (``status.components.*.
   traffic``) and the Ready condition for the new generation;
3. observe the canary revision's guardrails (``checkout_recs.evaluation.guardrails.
   evaluate_guardrails``) on counters scraped at the start and during the step;
4. ``continue`` after ``hold_s`` → next step (25, 50); ``rollback`` at any time → traffic back to
   the champion (``canaryTrafficPercent: 0``); ``hold`` longer than ``max_hold_s`` → rollback
   (not enough evidence is not a reason to ship);
5. the last step (100) promotes: ``canaryTrafficPercent`` is removed.

Every decision is kept in the ``RolloutResult`` and in annotations on the InferenceService
(``checkout-recs.io/*``) so ``deploy status`` shows who is serving and why.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from checkout_recs.deploy.kube import DeployError, IsvcRef, KubeApi
from checkout_recs.deploy.metrics import VariantCounters, guardrail_metrics
from checkout_recs.evaluation.guardrails import GuardrailConfig, GuardrailDecision, evaluate_guardrails

ANN = "checkout-recs.io/"
COMPONENTS = ("transformer", "predictor", "explainer")


class MetricsSource(Protocol):
    """Anything that returns cumulative per-revision counters (``PrometheusTextSource``)."""

    def scrape(self) -> dict[str, VariantCounters]: ...


class RampPlan(BaseModel):
    """Traffic steps and timings of a ramp (seconds)."""

    steps: tuple[int, ...] = Field(default=(5, 25, 50, 100), description="Canary traffic percent per step.")
    hold_s: float = Field(default=600.0, ge=0, description="Healthy observation needed before the next step.")
    poll_s: float = Field(default=30.0, gt=0, description="Seconds between metric scrapes.")
    max_hold_s: float = Field(default=1800.0, ge=0, description="Longest wait for conclusive metrics.")
    ready_timeout_s: float = Field(default=600.0, gt=0, description="Longest wait for the controller.")


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
    steps: list[StepRecord] = Field(default_factory=list)


# ---------------------------------------------------------------------------- reading the object


def components_of(isvc: dict[str, Any]) -> list[str]:
    """Components present in the spec (transformer first)."""
    return [c for c in COMPONENTS if isvc.get("spec", {}).get(c)]


def storage_uri(isvc: dict[str, Any]) -> str | None:
    """The bundle URI the predictor loads (``STORAGE_URI`` env, else ``model.storageUri``)."""
    pred = isvc.get("spec", {}).get("predictor", {})
    for c in pred.get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == "STORAGE_URI":
                return e.get("value")
    return (pred.get("model") or {}).get("storageUri")


def latest_traffic(isvc: dict[str, Any], component: str) -> tuple[str | None, int | None, str | None]:
    """``(latest revision, its percent, previous revision)`` from the component's status."""
    traffic = (isvc.get("status", {}).get("components", {}).get(component) or {}).get("traffic") or []
    latest = next((t for t in traffic if t.get("latestRevision")), None)
    prev = next((t for t in traffic if not t.get("latestRevision")), None)
    if latest is None:
        return None, None, prev and prev.get("revisionName")
    return latest.get("revisionName"), int(latest.get("percent") or 0), prev and prev.get("revisionName")


def is_ready_at(isvc: dict[str, Any], percent: int) -> bool:
    """True when the controller has applied this generation and the latest revision of every
    component gets ``percent`` of the traffic (100: all of it)."""
    meta, status = isvc.get("metadata", {}), isvc.get("status", {})
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return ready and all(latest_traffic(isvc, c)[1] == percent for c in components_of(isvc))


def rolled_back(isvc: dict[str, Any]) -> bool:
    """True when the controller has applied this generation and, in every component that still
    has a previous revision, the latest revision gets no traffic."""
    meta, status = isvc.get("metadata", {}), isvc.get("status", {})
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    for c in components_of(isvc):
        _, pct, prev = latest_traffic(isvc, c)
        if prev is not None and pct not in (0, None):
            return False
    return True


def _containers_with_uri(spec: dict[str, Any], uri: str) -> list[dict[str, Any]]:
    containers = copy.deepcopy(spec.get("containers") or [])
    for c in containers:
        for e in c.get("env") or []:
            if e.get("name") == "STORAGE_URI":
                e["value"] = uri
    return containers


# --------------------------------------------------------------------------------------- rollout


class Rollout:
    """Drives one InferenceService: canary, ramp, promote, rollback.

    Parameters
    ----------
    api : KubeApi
        Client (host injectable).
    ref : IsvcRef
        Which InferenceService.
    source : MetricsSource, optional
        Guardrail counters; required by ``run``.
    plan, guardrails :
        Ramp steps/timings and guardrail limits.
    sleep, clock, log :
        Injectable for tests (defaults: ``time.sleep``, ``time.monotonic``, no logging).
    """

    def __init__(self, api: KubeApi, ref: IsvcRef, source: MetricsSource | None = None,
                 plan: RampPlan | None = None, guardrails: GuardrailConfig | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = lambda _msg: None) -> None:
        self.api, self.ref, self.source = api, ref, source
        self.plan, self.guardrails = plan or RampPlan(), guardrails or GuardrailConfig()
        self.sleep, self.clock, self.log = sleep, clock, log

    # ----------------------------------------------------------------------------- primitives
    def _patch_components(self, fields: dict[str, Any], annotations: dict[str, str | None],
                          isvc: dict[str, Any] | None = None) -> dict[str, Any]:
        isvc = isvc or self.api.get_isvc(self.ref)
        spec = {c: dict(fields) for c in components_of(isvc)}
        body = {"metadata": {"annotations": {ANN + k: v for k, v in annotations.items()}}, "spec": spec}
        return self.api.patch_isvc(self.ref, body)

    def start(self, bundle_uri: str, percent: int) -> dict[str, Any]:
        """Point every component at ``bundle_uri`` with ``percent`` canary traffic."""
        isvc = self.api.get_isvc(self.ref)
        champion = storage_uri(isvc)
        spec = {c: {"containers": _containers_with_uri(isvc["spec"][c], bundle_uri), "canaryTrafficPercent": percent}
                for c in components_of(isvc)}
        ann = {ANN + "champion-uri": champion or "", ANN + "candidate-uri": bundle_uri,
               ANN + "rollout-state": f"canary-{percent}", ANN + "rollback-reason": None}
        return self.api.patch_isvc(self.ref, {"metadata": {"annotations": ann}, "spec": spec})

    def set_percent(self, percent: int) -> dict[str, Any]:
        """Move the canary to ``percent`` of the traffic."""
        return self._patch_components({"canaryTrafficPercent": percent}, {"rollout-state": f"canary-{percent}"})

    def promote(self) -> dict[str, Any]:
        """All traffic to the latest revision: ``canaryTrafficPercent`` removed."""
        return self._patch_components({"canaryTrafficPercent": None}, {"rollout-state": "promoted"})

    def rollback(self, reason: str) -> dict[str, Any]:
        """All traffic back to the previous rolled-out revision (the champion).

        Waits (up to ``plan.ready_timeout_s``) until the controller reports it: the latest
        revision at 0% wherever a previous revision exists. Returns the confirmed object, or the
        patched one (with a log line) when the controller did not confirm in time.
        """
        self.log(f"rollback: {reason}")
        after = self._patch_components({"canaryTrafficPercent": 0},
                                       {"rollout-state": "rolled-back", "rollback-reason": reason[:250]})
        if rolled_back(after):
            return after
        rv = after.get("metadata", {}).get("resourceVersion")
        confirmed = self.api.watch_isvc(self.ref, rolled_back, self.plan.ready_timeout_s, rv)
        if confirmed is None:
            self.log(f"rollback not confirmed by the controller within {self.plan.ready_timeout_s:.0f}s")
        return confirmed or after

    def wait_for(self, percent: int, after: dict[str, Any]) -> dict[str, Any] | None:
        """Watch until the controller reports ``percent``; the object, or None on timeout."""
        if is_ready_at(after, percent):
            return after
        rv = after.get("metadata", {}).get("resourceVersion")
        return self.api.watch_isvc(self.ref, lambda o: is_ready_at(o, percent), self.plan.ready_timeout_s, rv)

    def status(self) -> dict[str, Any]:
        """Who serves what: per component the traffic split, plus the rollout annotations."""
        isvc = self.api.get_isvc(self.ref)
        ann = {k[len(ANN) :]: v for k, v in (isvc["metadata"].get("annotations") or {}).items() if k.startswith(ANN)}
        comps = {c: (isvc.get("status", {}).get("components", {}).get(c) or {}).get("traffic") or []
                 for c in components_of(isvc)}
        return {"name": self.ref.name, "namespace": self.ref.namespace, "storage_uri": storage_uri(isvc),
                "ready": is_ready_at(isvc, latest_traffic(isvc, components_of(isvc)[0])[1] or 0)
                if components_of(isvc) else False, "traffic": comps, "rollout": ann}

    # ---------------------------------------------------------------------------------- ramp
    def _canary_revision(self, isvc: dict[str, Any]) -> tuple[str | None, str | None]:
        front = components_of(isvc)[0]  # requests enter through the transformer when there is one
        latest, _, prev = latest_traffic(isvc, front)
        return latest, prev

    def observe(self, isvc: dict[str, Any], percent: int) -> StepRecord:
        """Watch the guardrails of the canary revision for one step; the step's verdict."""
        if self.source is None:
            raise ValueError("a metrics source is needed to observe guardrails")
        canary, control = self._canary_revision(isvc)
        base, notes = None, []
        decision: GuardrailDecision | None = None
        metrics: dict[str, Any] | None = None
        t0 = self.clock()
        while True:
            try:
                now = self.source.scrape()
                if base is None:
                    base, t0 = now, self.clock()  # the window starts at the baseline scrape
                else:
                    window = now.get(canary or "", VariantCounters()).minus(base.get(canary or "", VariantCounters()))
                    ctrl = now.get(control or "", VariantCounters()).minus(base.get(control or "", VariantCounters()))
                    gm, notes = guardrail_metrics(window, ctrl)
                    metrics, decision = gm.model_dump(), evaluate_guardrails(gm, self.guardrails)
            except ConnectionError as e:
                notes = [f"metrics unavailable: {e}"]
                decision = None
            elapsed = self.clock() - t0
            if decision is not None and decision.action == "rollback":
                break
            if decision is not None and decision.action == "continue" and elapsed >= self.plan.hold_s:
                break
            if elapsed >= self.plan.max_hold_s:
                break
            self.sleep(self.plan.poll_s)
        action = decision.action if decision else "hold"
        summary = decision.summary() if decision else "; ".join(notes) or "no metrics"
        return StepRecord(percent=percent, action=action, summary=summary, canary_revision=canary,
                          metrics=metrics, notes=notes)

    def run(self, bundle_uri: str) -> RolloutResult:
        """Ramp ``bundle_uri`` through ``plan.steps``; promote, or roll back on a broken guardrail.

        Returns
        -------
        RolloutResult
            ``promoted``; ``rolled_back`` (a guardrail broke or stayed inconclusive past
            ``max_hold_s``); ``failed`` (the controller never reported the split, or the
            bundle is already the one serving). API errors raise ``DeployError`` after an
            attempted rollback.
        """
        champion = storage_uri(self.api.get_isvc(self.ref))
        result = RolloutResult(outcome="failed", reason="", candidate_uri=bundle_uri, champion_uri=champion)
        if champion == bundle_uri:
            result.reason = f"{bundle_uri} is already serving"
            return result
        try:
            return self._ramp(bundle_uri, result)
        except DeployError as e:
            self._safe_rollback(f"API error during the ramp: {e}")
            raise

    def _ramp(self, bundle_uri: str, result: RolloutResult) -> RolloutResult:
        for i, pct in enumerate(self.plan.steps):
            self.log(f"step {pct}%")
            after = self.start(bundle_uri, pct) if i == 0 else self.promote() if pct >= 100 else self.set_percent(pct)
            ready = self.wait_for(100 if pct >= 100 else pct, after)
            if ready is None:
                self.rollback(f"controller did not report {pct}% within {self.plan.ready_timeout_s:.0f}s")
                result.reason = f"not ready at {pct}%"
                return result
            if pct >= 100:
                result.steps.append(StepRecord(percent=100, action="promoted", summary="all traffic on the candidate"))
                result.outcome, result.reason = "promoted", "every guardrail held at every step"
                return result
            step = self.observe(ready, pct)
            result.steps.append(step)
            self.log(f"step {pct}%: {step.summary}")
            if step.action != "continue":
                why = step.summary if step.action == "rollback" else f"inconclusive after {self.plan.max_hold_s:.0f}s: {step.summary}"
                self.rollback(f"at {pct}%: {why}")
                result.outcome, result.reason = "rolled_back", f"at {pct}%: {why}"
                return result
        result.reason = "plan has no 100% step: left at the last canary share"
        return result

    def _safe_rollback(self, reason: str) -> None:
        try:
            self.rollback(reason)
        except DeployError as e:
            self.log(f"rollback failed too: {e}")
