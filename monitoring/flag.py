"""The drift flag serving reads: a Redis key holding who set it, why, when, and the report.

While the key ``checkout_recs:drift_flag`` exists, serving answers with the deterministic
fallback (``fallback_reason="drift_flag"``). The monitoring job sets it when drift is confirmed; a
person (``checkout-recs drift-flag clear``) or a retrain clears it. Every set and clear is also
appended to ``<key>:history`` (a capped Redis list) so on-call can see what happened.

Only ``redis`` is imported here, so the serving process can use ``read_drift_flag`` cheaply.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from checkout_recs.config import Settings

DRIFT_FLAG_KEY = "checkout_recs:drift_flag"
HISTORY_LEN = 200


class DriftFlagUnavailable(RuntimeError):
    """Redis could not be read or written; callers decide how to degrade."""


class DriftFlag(BaseModel):
    """The flag's JSON payload."""

    who: str = Field(min_length=1, description="Person or job that set it (e.g. 'monitoring-job').")
    why: str = Field(min_length=1, description="One line: which report, which columns.")
    when: str = Field(description="UTC ISO-8601 time it was set.")
    report: str | None = Field(default=None, description="Path or URI of the drift report.")


class FlagEvent(BaseModel):
    """One entry of the flag's history."""

    action: Literal["set", "clear"]
    who: str
    why: str
    when: str
    report: str | None = None


def redis_client(url: str | None = None) -> Any:
    """A redis client for ``url`` (default: ``Settings.from_env().redis_url``)."""
    import redis  # lazy: the Redis backend is optional (memory backend needs nothing)

    return redis.Redis.from_url(url or Settings.from_env().redis_url, socket_timeout=2.0)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def set_drift_flag(
    client: Any, who: str, why: str, report: str | None = None, key: str = DRIFT_FLAG_KEY
) -> DriftFlag:
    """Set (or overwrite) the flag. Returns the stored payload; raises ``DriftFlagUnavailable``."""
    flag = DriftFlag(who=who, why=why, when=_now(), report=report)
    event = FlagEvent(action="set", **flag.model_dump())
    _write(client, key, flag.model_dump_json(), event)
    return flag


def clear_drift_flag(
    client: Any, who: str, why: str, key: str = DRIFT_FLAG_KEY
) -> DriftFlag | None:
    """Clear the flag. Returns the flag that was cleared, or None when none was set."""
    previous = read_drift_flag(client, key)
    event = FlagEvent(action="clear", who=who, why=why, when=_now())
    _write(client, key, None, event)
    return previous


def read_drift_flag(client: Any, key: str = DRIFT_FLAG_KEY) -> DriftFlag | None:
    """The current flag, or None when clear. Raises ``DriftFlagUnavailable`` if Redis fails.

    A payload that is not valid JSON still counts as set (someone set the key by hand): it is
    returned with ``who='unknown'`` and the raw value as ``why``, so serving stays safe.
    """
    try:
        raw = client.get(key)
    except Exception as exc:  # redis.ConnectionError, TimeoutError, ...
        raise DriftFlagUnavailable(f"cannot read {key}: {exc}") from exc
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return DriftFlag.model_validate_json(text)
    except ValueError:
        return DriftFlag(who="unknown", why=f"unparseable flag payload: {text[:200]}", when=_now())


def flag_history(client: Any, key: str = DRIFT_FLAG_KEY, limit: int = 20) -> list[FlagEvent]:
    """The last ``limit`` set/clear events, newest first."""
    try:
        rows = client.lrange(f"{key}:history", 0, limit - 1)
    except Exception as exc:
        raise DriftFlagUnavailable(f"cannot read {key}:history: {exc}") from exc
    return [FlagEvent.model_validate_json(r) for r in rows]


def _write(client: Any, key: str, payload: str | None, event: FlagEvent) -> None:
    try:
        pipe = client.pipeline(transaction=True)
        if payload is None:
            pipe.delete(key)
        else:
            pipe.set(key, payload)
        pipe.lpush(f"{key}:history", event.model_dump_json())
        pipe.ltrim(f"{key}:history", 0, HISTORY_LEN - 1)
        pipe.execute()
    except Exception as exc:
        raise DriftFlagUnavailable(f"cannot write {key}: {exc}") from exc
