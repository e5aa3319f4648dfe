"""The policy ConfigMap, watched by the transformer: gauges on ``/metrics`` and the polling task.

``checkout_recs.serving.policy_source`` reads and validates the mounted folder and applies a good
config to the ``Recommender``; here it is scheduled and exported:

* ``watch_policy`` — every ``poll_s`` seconds, ``PolicyDir.changed`` (a ``stat`` per file, and a
  read when one moved) in a worker thread, then ``PolicyReloader.apply`` on the event loop, between
  requests (``Recommender.decide`` never awaits, so no request sees half a config);
* ``checkout_recs_policy_config_valid`` — 1 when the last read of ``policy.json`` was valid, 0 when
  it was refused (the last good config still serves; the log says why);
* ``checkout_recs_policy_config_info{version}`` — 1 for the content hash of the config in force;
* ``checkout_recs_policy_config_loaded_timestamp_seconds`` — when that config was applied (unix s);
* ``checkout_recs_policy_kill_switch`` — the ConfigMap's ``kill_switch`` (1 on).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge

from checkout_recs.serving.policy_source import PolicyReloader, PolicyStatus

log = logging.getLogger(__name__)

CONFIG_VALID = Gauge(
    "checkout_recs_policy_config_valid",
    "1 when the last read of the policy ConfigMap was a valid PolicyConfig, else 0",
)
CONFIG_INFO = Gauge(
    "checkout_recs_policy_config_info", "Content hash of the policy config in force", ["version"]
)
CONFIG_LOADED = Gauge(
    "checkout_recs_policy_config_loaded_timestamp_seconds",
    "When the policy config in force was applied (unix seconds)",
)
KILL_SWITCH = Gauge("checkout_recs_policy_kill_switch", "The policy ConfigMap's kill_switch (1 on)")


def observe_status(status: PolicyStatus) -> None:
    """Set the gauges from a reload status."""
    CONFIG_VALID.set(1 if status.valid else 0)
    CONFIG_INFO.clear()
    CONFIG_INFO.labels(version=status.version).set(1)
    if status.valid:
        CONFIG_LOADED.set(status.loaded_at)
    KILL_SWITCH.set(1 if status.kill_switch else 0)


async def watch_policy(reloader: PolicyReloader, poll_s: float) -> None:
    """Poll the folder every ``poll_s`` seconds until cancelled (see module docstring)."""
    while True:
        await asyncio.sleep(poll_s)
        try:
            read = await asyncio.to_thread(reloader.source.changed)
        except Exception:  # noqa: BLE001 - a failed poll is logged; the next one tries again
            log.exception("reading the policy folder %s failed", reloader.source.folder)
            continue
        if read is not None:
            reloader.apply(read)
