"""Operational switches read from Redis: the kill switch and the drift flag.

Keys (agreed with monitoring): ``checkout_recs:kill_switch`` and ``checkout_recs:drift_flag``.
A switch is on while its key exists (the value is a JSON object such as
``{"who": ..., "why": ..., "when": ...}``, kept as detail) — the rule of ``monitoring.flag``. Reads are
cached for ``ttl_s`` seconds so the request path pays one Redis round trip per second at most;
when Redis cannot be read the last known value is kept (off if never read).

The policy ConfigMap's ``kill_switch`` (written with the Redis key by ``checkout-recs deploy
kill-switch``) is a second way in: while ``pinned_kill`` is set (``serving.policy_source`` sets it
from the mounted file) the kill switch reads on whatever Redis says, so the switch still acts
when Redis could not be written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

KILL_SWITCH_KEY = "checkout_recs:kill_switch"
DRIFT_FLAG_KEY = "checkout_recs:drift_flag"


@dataclass
class SwitchState:
    """Current switch values and what was read."""

    kill_switch: bool = False
    drift_flag: bool = False
    detail: dict[str, Any] | None = None
    read_ok: bool = True


def _on(raw: bytes | None) -> bool:
    """A switch is on while its key exists (monitoring.flag's rule), whatever the value."""
    return raw is not None


def _detail(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class Switches:
    """Cached reader of the two switches.

    Parameters
    ----------
    redis_url : Redis URL, or None for a store that always reads "off" unless ``set_local``.
    ttl_s : cache lifetime in seconds (0 reads every time).
    kill_key, drift_key : key names (tests use private ones).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        ttl_s: float = 1.0,
        timeout_s: float = 0.05,
        kill_key: str = KILL_SWITCH_KEY,
        drift_key: str = DRIFT_FLAG_KEY,
    ) -> None:
        self.ttl_s, self.kill_key, self.drift_key = ttl_s, kill_key, drift_key
        self._client = None
        if redis_url:
            import redis.asyncio as aredis  # lazy: the Redis backend is optional (memory backend needs nothing)

            self._client = aredis.Redis.from_url(
                redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        self._state = SwitchState()
        self._read_at = float("-inf")
        #: Kill switch on whatever Redis says (the policy ConfigMap's ``kill_switch: "true"``).
        self.pinned_kill = False

    def set_local(self, kill_switch: bool | None = None, drift_flag: bool | None = None) -> None:
        """Override the switches in this process (embedded mode without Redis, tests)."""
        if kill_switch is not None:
            self._state.kill_switch = kill_switch
        if drift_flag is not None:
            self._state.drift_flag = drift_flag

    async def state(self) -> SwitchState:
        """The switches, read from Redis at most once per ``ttl_s`` seconds (``pinned_kill`` ORed in)."""
        state = await self._read()
        return (
            replace(state, kill_switch=True)
            if self.pinned_kill and not state.kill_switch
            else state
        )

    async def _read(self) -> SwitchState:
        now = time.monotonic()
        if self._client is None or now - self._read_at < self.ttl_s:
            return self._state
        self._read_at = now
        try:
            kill, drift = await self._client.mget([self.kill_key, self.drift_key])
        except Exception:  # noqa: BLE001 - any Redis failure keeps the last known value
            self._state.read_ok = False
            return self._state
        self._state = SwitchState(
            kill_switch=_on(kill),
            drift_flag=_on(drift),
            detail={"kill_switch": _detail(kill), "drift_flag": _detail(drift)},
        )
        return self._state
