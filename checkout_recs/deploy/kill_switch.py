"""The kill switch: every request answered by the deterministic fallback.

Two places hold it, written together:

* the policy ConfigMap (``kill_switch: "true"``, with who/why/when): the audited, declarative
  record on the cluster, what ``kubectl get cm checkout-recs-policy`` shows; the transformers
  also obey it (mounted at ``CHECKOUT_RECS_POLICY_DIR``, re-read on change:
  ``checkout_recs.serving.policy_source``), within the kubelet's sync, even when Redis was not written;
* the Redis key ``checkout_recs:kill_switch`` (``checkout_recs.serving.switches``): what the
  transformer reads on the request path (cached one second), so the switch acts within seconds
  without a restart. On while the key exists; the value is ``{"who", "why", "when"}``.

Either write may fail on its own; the result says which took effect.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pydantic import BaseModel

from checkout_recs.deploy.kube import DeployError, IsvcRef, KubeApi
from checkout_recs.serving.switches import KILL_SWITCH_KEY


class KillSwitchResult(BaseModel):
    """What each write did; ``error`` fields say why one failed (None when it worked or was skipped)."""

    on: bool
    configmap: dict[str, str] | None = None
    configmap_error: str | None = None
    redis_written: bool = False
    redis_error: str | None = None

    @property
    def effective(self) -> bool:
        """True when serving will obey: the Redis key it reads was written."""
        return self.redis_written


def set_kill_switch(
    api: KubeApi | None, ref: IsvcRef, on: bool, who: str, reason: str, redis: Any = None
) -> KillSwitchResult:
    """Turn the kill switch on or off in the ConfigMap (``api``) and in Redis (``redis`` client).

    Parameters
    ----------
    api : KubeApi or None
        None skips the ConfigMap (a laptop without a cluster).
    ref : IsvcRef
        Namespace and ConfigMap name.
    redis : redis.Redis or None
        None skips the Redis key (serving then does not see the change: said in the result).

    Returns
    -------
    KillSwitchResult
        Never raises for a failed write; each failure is reported in its field.
    """
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result = KillSwitchResult(on=on)
    if api is not None:
        data = {
            "kill_switch": "true" if on else "false",
            "kill_switch_by": who,
            "kill_switch_reason": reason,
            "kill_switch_at": now,
        }
        try:
            result.configmap = api.patch_configmap_data(ref.namespace, ref.policy_configmap, data)
        except DeployError as e:
            result.configmap_error = str(e)
    if redis is not None:
        try:
            if on:
                redis.set(KILL_SWITCH_KEY, json.dumps({"who": who, "why": reason, "when": now}))
            else:
                redis.delete(KILL_SWITCH_KEY)
            result.redis_written = True
        except Exception as e:  # noqa: BLE001 - any client error is reported, not raised
            result.redis_error = f"{type(e).__name__}: {e}"
    return result
