"""Progressive canary rollout of a serving bundle on KServe, with guardrails and self-rollback.

KServe keeps the last fully rolled-out revision of each component and splits traffic with
``canaryTrafficPercent``. In production the transformer and the ranker are collocated
(``deploy.isvc.layout``: one predictor component whose pod holds both containers), so there is
one ``STORAGE_URI`` (the ranker container's, downloaded once for both), one revision and one split:
the canary moves the pair. A split layout (a transformer component too) still ramps, every
component patched alike, but KServe draws each component's split independently per request; the
result records the layout and the GMV attribution keeps only answers whose transformer and
ranker served the same bundle (``deploy.attribution``). The ramp:

1. patch ``STORAGE_URI`` where the containers set it (collocated: the ranker container only) to
   the new bundle and set ``canaryTrafficPercent`` of every component to the first step (5);
2. watch the InferenceService until the controller reports the split (``status.components.*.
   traffic``) and the Ready condition for the new generation;
3. observe the canary revision's guardrails (``checkout_recs.evaluation.experiments.guardrails.
   evaluate_guardrails``) on PromQL figures over the step's window so far (``deploy.metrics``:
   error and fallback rates, p95 latency from the histogram); GMV per session
   of the canary vs the champion comes from the decision log joined with outcome events
   (``GmvSource``, ``deploy.attribution.DecisionLogGmv``) over every answer since the ramp
   started, with a confidence interval; from ``plan.gmv_required_from`` percent on, a step
   does not pass until that comparison is measurable;
4. ``continue`` after ``hold_s`` → next step (25, 50); ``rollback`` at any time → traffic back to
   the champion (``canaryTrafficPercent: 0``); ``hold`` longer than ``max_hold_s`` → rollback
   (not enough evidence is not a reason to ship);
5. the last step (100) promotes: ``canaryTrafficPercent`` is removed; once the controller
   reports it, the registry hook moves the MLflow ``champion`` alias (``tracking.MlflowAliases``).
   A rollback tells the hook too; the champion alias stays.

Every decision is kept in the ``RolloutResult`` and in annotations on the InferenceService
(``checkout-recs.io/*``) so ``deploy status`` shows who is serving and why.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from checkout_recs.deploy.isvc import (
    components_of,
    containers_with_uri,
    is_ready_at,
    latest_traffic,
    layout,
    rolled_back,
    storage_uri,
)
from checkout_recs.deploy.kube import DeployError, IsvcRef, KubeApi
from checkout_recs.deploy.metrics import VariantWindow, guardrail_metrics
from checkout_recs.deploy.ramp import (  # noqa: F401 - re-exported: the rollout's public types
    GmvSource,
    MetricsSource,
    RampPlan,
    RegistryHook,
    RolloutResult,
    StepRecord,
)
from checkout_recs.evaluation.experiments.guardrails import (
    Breach,
    GuardrailConfig,
    GuardrailDecision,
    GuardrailMetrics,
    evaluate_guardrails,
)

ANN = "checkout-recs.io/"


class Rollout:
    """Drives one InferenceService: canary, ramp, promote, rollback.

    Parameters
    ----------
    api : KubeApi
        Client (host injectable).
    ref : IsvcRef
        Which InferenceService.
    source : MetricsSource, optional
        Guardrail figures per revision over a window (PromQL: ``PrometheusQuerySource``);
        required by ``run``.
    plan, guardrails :
        Ramp steps/timings and guardrail limits.
    gmv : GmvSource, optional
        GMV per session canary vs champion; without it the GMV guardrail uses an exporter's
        counters in Prometheus (point ratio only) or is skipped.
    registry : RegistryHook, optional
        Moves the model registry's aliases when a ramp is promoted or rolled back.
    sleep, clock, log :
        Injectable for tests (defaults: ``time.sleep``, ``time.monotonic``, no logging).
    """

    def __init__(
        self,
        api: KubeApi,
        ref: IsvcRef,
        source: MetricsSource | None = None,
        plan: RampPlan | None = None,
        guardrails: GuardrailConfig | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = lambda _msg: None,
        gmv: GmvSource | None = None,
        registry: RegistryHook | None = None,
    ) -> None:
        self.api, self.ref, self.source = api, ref, source
        self.plan, self.guardrails = plan or RampPlan(), guardrails or GuardrailConfig()
        self.sleep, self.clock, self.log = sleep, clock, log
        self.gmv, self.registry = gmv, registry
        self._arms: tuple[str, str, dt.datetime] | None = None  # candidate, champion, ramp start

    # ----------------------------------------------------------------------------- primitives
    def _patch_components(
        self,
        fields: dict[str, Any],
        annotations: dict[str, str | None],
        isvc: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        isvc = isvc or self.api.get_isvc(self.ref)
        spec = {c: dict(fields) for c in components_of(isvc)}
        body = {
            "metadata": {"annotations": {ANN + k: v for k, v in annotations.items()}},
            "spec": spec,
        }
        return self.api.patch_isvc(self.ref, body)

    def start(self, bundle_uri: str, percent: int) -> dict[str, Any]:
        """Point every component at ``bundle_uri`` with ``percent`` canary traffic (collocated: the
        one predictor component, both containers in one revision)."""
        isvc = self.api.get_isvc(self.ref)
        champion = storage_uri(isvc)
        if layout(isvc) == "split":
            self.log(
                "split layout: KServe splits transformer and predictor traffic independently; "
                "GMV attribution keeps only answers whose transformer and ranker served one bundle"
            )
        spec = {
            c: {
                "containers": containers_with_uri(isvc["spec"][c], bundle_uri),
                "canaryTrafficPercent": percent,
            }
            for c in components_of(isvc)
        }
        ann = {
            ANN + "champion-uri": champion or "",
            ANN + "candidate-uri": bundle_uri,
            ANN + "rollout-state": f"canary-{percent}",
            ANN + "rollback-reason": None,
        }
        return self.api.patch_isvc(self.ref, {"metadata": {"annotations": ann}, "spec": spec})

    def set_percent(self, percent: int) -> dict[str, Any]:
        """Move the canary to ``percent`` of the traffic."""
        return self._patch_components(
            {"canaryTrafficPercent": percent}, {"rollout-state": f"canary-{percent}"}
        )

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
        after = self._patch_components(
            {"canaryTrafficPercent": 0},
            {"rollout-state": "rolled-back", "rollback-reason": reason[:250]},
        )
        self._tell_registry("rolled_back", after, reason)
        if rolled_back(after):
            return after
        rv = after.get("metadata", {}).get("resourceVersion")
        confirmed = self.api.watch_isvc(self.ref, rolled_back, self.plan.ready_timeout_s, rv)
        if confirmed is None:
            self.log(
                f"rollback not confirmed by the controller within {self.plan.ready_timeout_s:.0f}s"
            )
        return confirmed or after

    def promote_confirmed(self) -> dict[str, Any] | None:
        """``promote``, wait until the controller reports all traffic on the latest revision,
        then tell the registry (the ``champion`` alias moves). None when not confirmed in time
        (the registry is not told)."""
        ready = self.wait_for(100, self.promote())
        if ready is not None:
            self._tell_registry("promoted", ready)
        return ready

    def _tell_registry(self, event: str, isvc: dict[str, Any], reason: str = "") -> None:
        if self.registry is None:
            return
        uri = (isvc.get("metadata", {}).get("annotations") or {}).get(
            ANN + "candidate-uri"
        ) or storage_uri(isvc)
        if not uri:
            self.log(f"registry: no candidate URI on the InferenceService, {event} not recorded")
            return
        try:
            note = (
                self.registry.promoted(uri)
                if event == "promoted"
                else self.registry.rolled_back(uri, reason)
            )
        except Exception as e:  # noqa: BLE001 - the traffic decision stands; say the registry lags
            note = f"registry not updated ({event}): {type(e).__name__}: {e}"
        self.log(f"registry: {note}")

    def wait_for(self, percent: int, after: dict[str, Any]) -> dict[str, Any] | None:
        """Watch until the controller reports ``percent``; the object, or None on timeout."""
        if is_ready_at(after, percent):
            return after
        rv = after.get("metadata", {}).get("resourceVersion")
        return self.api.watch_isvc(
            self.ref, lambda o: is_ready_at(o, percent), self.plan.ready_timeout_s, rv
        )

    def status(self) -> dict[str, Any]:
        """Who serves what: per component the traffic split, plus the rollout annotations."""
        isvc = self.api.get_isvc(self.ref)
        ann = {
            k[len(ANN) :]: v
            for k, v in (isvc["metadata"].get("annotations") or {}).items()
            if k.startswith(ANN)
        }
        comps = {
            c: (isvc.get("status", {}).get("components", {}).get(c) or {}).get("traffic") or []
            for c in components_of(isvc)
        }
        return {
            "name": self.ref.name,
            "namespace": self.ref.namespace,
            "layout": layout(isvc),
            "storage_uri": storage_uri(isvc),
            "ready": is_ready_at(isvc, latest_traffic(isvc, components_of(isvc)[0])[1] or 0)
            if components_of(isvc)
            else False,
            "traffic": comps,
            "rollout": ann,
        }

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
        notes: list[str] = []
        decision: GuardrailDecision | None = None
        metrics: dict[str, Any] | None = None
        t0 = self.clock()  # the window starts when the controller reports the split
        while True:
            self.sleep(self.plan.poll_s)
            elapsed = self.clock() - t0
            try:
                now = self.source.window(elapsed)
                gm, notes = guardrail_metrics(
                    now.get(canary or "", VariantWindow()), now.get(control or "", VariantWindow())
                )
                if self.gmv is not None:
                    gm, notes = self._with_gmv(gm, notes)
                metrics, decision = gm.model_dump(), evaluate_guardrails(gm, self.guardrails)
                decision = self._require_gmv(decision, gm.gmv_ratio, percent)
            except (ConnectionError, OSError) as e:
                notes = [f"metrics unavailable: {e}"]
                decision = None
            if decision is not None and decision.action == "rollback":
                break
            if (
                decision is not None
                and decision.action == "continue"
                and elapsed >= self.plan.hold_s
            ):
                break
            if elapsed >= self.plan.max_hold_s:
                break
        action = decision.action if decision else "hold"
        summary = decision.summary() if decision else "; ".join(notes) or "no metrics"
        return StepRecord(
            percent=percent,
            action=action,
            summary=summary,
            canary_revision=canary,
            metrics=metrics,
            notes=notes,
        )

    def _with_gmv(
        self, gm: GuardrailMetrics, notes: list[str]
    ) -> tuple[GuardrailMetrics, list[str]]:
        """Replace the exporter's GMV ratio by the decision-log comparison (ratio and interval)."""
        assert self.gmv is not None and self._arms is not None
        notes = [n for n in notes if "GMV" not in n]
        try:
            reading = self.gmv.compare(*self._arms)
        except Exception as e:  # noqa: BLE001 - unreadable logs: GMV unmeasured (holds from gmv_required_from)
            return gm.model_copy(update={"gmv_ratio": None, "gmv_ratio_upper": None}), [
                *notes,
                f"GMV source failed: {type(e).__name__}: {e}",
            ]
        return gm.model_copy(
            update={"gmv_ratio": reading.ratio, "gmv_ratio_upper": reading.ratio_upper}
        ), [*notes, reading.note]

    def _require_gmv(
        self, decision: GuardrailDecision, ratio: float | None, percent: int
    ) -> GuardrailDecision:
        """Hold a passing step at or above ``plan.gmv_required_from`` while GMV is unmeasured."""
        if (
            self.gmv is None
            or ratio is not None
            or decision.action != "continue"
            or percent < self.plan.gmv_required_from
        ):
            return decision
        why = Breach(
            name="gmv_unmeasured",
            value=0.0,
            limit=1.0,
            severity="hold",
            reason=f"GMV per session not measurable yet (needed from {self.plan.gmv_required_from}%)",
        )
        return decision.model_copy(
            update={"action": "hold", "passed": False, "breaches": [*decision.breaches, why]}
        )

    def run(self, bundle_uri: str) -> RolloutResult:
        """Ramp ``bundle_uri`` through ``plan.steps``; promote, or roll back on a broken guardrail.

        Returns
        -------
        RolloutResult
            ``promoted``; ``rolled_back`` (a guardrail broke or stayed inconclusive past
            ``max_hold_s``); ``failed`` (the controller never reported the split, or the
            bundle is already the one serving). API errors raise ``DeployError`` (any other
            unexpected error raises as is) after an attempted rollback.
        """
        isvc = self.api.get_isvc(self.ref)
        champion = storage_uri(isvc)
        result = RolloutResult(
            outcome="failed",
            reason="",
            candidate_uri=bundle_uri,
            champion_uri=champion,
            layout=layout(isvc),
        )
        if champion == bundle_uri:
            result.reason = f"{bundle_uri} is already serving"
            return result
        self._arms = (bundle_uri, champion or "", dt.datetime.now(dt.UTC))
        try:
            return self._ramp(bundle_uri, result)
        except Exception as e:
            self._safe_rollback(
                f"{'API error' if isinstance(e, DeployError) else type(e).__name__} during the ramp: {e}"
            )
            raise

    def _ramp(self, bundle_uri: str, result: RolloutResult) -> RolloutResult:
        for i, pct in enumerate(self.plan.steps):
            self.log(f"step {pct}%")
            after = (
                self.start(bundle_uri, pct)
                if i == 0
                else self.promote()
                if pct >= 100
                else self.set_percent(pct)
            )
            ready = self.wait_for(100 if pct >= 100 else pct, after)
            if ready is None:
                self.rollback(
                    f"controller did not report {pct}% within {self.plan.ready_timeout_s:.0f}s"
                )
                result.reason = f"not ready at {pct}%"
                return result
            if pct >= 100:
                self._tell_registry("promoted", ready)
                result.steps.append(
                    StepRecord(
                        percent=100, action="promoted", summary="all traffic on the candidate"
                    )
                )
                result.outcome, result.reason = "promoted", "every guardrail held at every step"
                return result
            step = self.observe(ready, pct)
            result.steps.append(step)
            self.log(f"step {pct}%: {step.summary}")
            if step.action != "continue":
                why = (
                    step.summary
                    if step.action == "rollback"
                    else f"inconclusive after {self.plan.max_hold_s:.0f}s: {step.summary}"
                )
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
