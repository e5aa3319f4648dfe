"""Which exploration ledger a configuration asks for (``open_ledger``).

The ledger implementations depend on their base (``ledger.ExplorationLedger``), never the other
way round: ``ledger.py`` holds the protocol and the inline ledgers, ``ledger_background.py`` the
background-renewed one, and this module, above both, picks one from ``cfg.ledger``.
"""

from __future__ import annotations

from checkout_recs.policy.config import ExplorationConfig
from checkout_recs.policy.ledger import ExplorationLedger, LocalLedger, RedisLedger
from checkout_recs.policy.ledger_background import BackgroundRedisLedger


def open_ledger(cfg: ExplorationConfig) -> ExplorationLedger:
    """The ledger ``cfg.ledger`` asks for: a Redis ledger for backend ``redis`` (or ``auto`` with a
    URL), else ``LocalLedger``. ValueError for backend ``redis`` without a URL.

    The Redis ledger is ``BackgroundRedisLedger`` when ``cfg.ledger.renewal`` is ``background``
    (serving: every round trip runs in a renewer thread, the request path never waits on Redis),
    else ``RedisLedger`` (offline evaluation, simulations: the calls are made inline,
    deterministically)."""
    lc = cfg.ledger
    if lc.backend == "redis" and not lc.url:
        raise ValueError("exploration ledger backend 'redis' needs ledger.url")
    if lc.backend == "redis" or (lc.backend == "auto" and lc.url):
        if lc.renewal == "background":
            return BackgroundRedisLedger(cfg, str(lc.url))
        return RedisLedger(cfg, str(lc.url))
    return LocalLedger(cfg)
