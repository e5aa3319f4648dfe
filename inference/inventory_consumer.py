"""The inventory consumer process: applies the inventory stream to the authoritative Redis state.

Entry point of the consumer Deployment (``manifests/base/inventory-consumer.yaml``, the
transformer's image): ``python -m inference.inventory_consumer --redis_url URL --metrics_port 9108``.
``checkout-recs inventory consume`` runs the same loop. One ``InventoryConsumer`` over a
``RedisStreamSource`` (``checkout_recs/serving/inventory_stream.py``): read a batch, apply it in
sequence order per listing, acknowledge it; progress and lag are logged every
``--progress_every_s`` seconds. Prometheus metrics on ``:<metrics_port>/metrics``
(``prometheus_client.start_http_server``; 0 = none):

* ``checkout_recs_inventory_consumer_lag_entries`` — entries not yet applied (not yet delivered
  plus delivered but not acknowledged), read from Redis at scrape time (NaN when it cannot answer);
* ``checkout_recs_inventory_consumer_lag_seconds`` — age of the oldest such entry;
* ``checkout_recs_inventory_consumer_events{outcome}`` — entries applied / stale / rejected since start;
* ``checkout_recs_inventory_consumer_failures`` — batches left unacknowledged (Redis did not
  answer) and replayed.

SIGTERM / SIGINT stop it after the batch in hand: acknowledged, or left pending and replayed by
the next consumer — never lost.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge, start_http_server

from checkout_recs.serving.inventory import RedisInventoryStore
from checkout_recs.serving.inventory_stream import (
    DEFAULT_GROUP,
    ConsumerStats,
    InventoryConsumer,
    InventoryEventSource,
    RedisStreamSource,
    stream_key,
)
from checkout_recs.serving.settings import ENV as SETTINGS_ENV
from checkout_recs.serving.settings import redis_dsn

LAG_ENTRIES = Gauge(
    "checkout_recs_inventory_consumer_lag_entries", "Inventory entries not yet applied"
)
LAG_SECONDS = Gauge(
    "checkout_recs_inventory_consumer_lag_seconds",
    "Age of the oldest inventory entry not yet applied",
)
EVENTS = Gauge(
    "checkout_recs_inventory_consumer_events", "Inventory entries handled since start", ["outcome"]
)
FAILURES = Gauge(
    "checkout_recs_inventory_consumer_failures", "Inventory batches replayed because Redis failed"
)
#: Environment the consumer reads: the Redis AUTH token, from a Secret (never in the arguments).
ENV_VARS = frozenset({SETTINGS_ENV["redis_password"]})


def build_parser() -> argparse.ArgumentParser:
    """Flags of the consumer process (``checkout-recs inventory consume`` has the same ones)."""
    p = argparse.ArgumentParser(
        description="Apply the inventory stream to the Redis inventory state"
    )
    p.add_argument("--redis_url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--redis_prefix", default="checkout_recs")
    p.add_argument("--group", default=DEFAULT_GROUP)
    p.add_argument("--consumer", default=None, help="this consumer's name (default: the host name)")
    p.add_argument(
        "--claim_idle_ms",
        type=int,
        default=30_000,
        help="take over entries pending this long at another (dead) consumer",
    )
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--block_ms", type=int, default=1000)
    p.add_argument("--metrics_port", type=int, default=9108, help="0: no /metrics server")
    p.add_argument("--progress_every_s", type=float, default=10.0)
    return p


def _safe(fn: Callable[[], float]) -> Callable[[], float]:
    def read() -> float:
        try:
            return float(fn())
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is down
            return float("nan")

    return read


def export_metrics(source: InventoryEventSource, consumer: InventoryConsumer) -> None:
    """Bind the gauges to ``source``'s lag (read at scrape time) and ``consumer``'s counts."""
    LAG_ENTRIES.set_function(_safe(lambda: source.lag().entries))
    LAG_SECONDS.set_function(_safe(lambda: source.lag().seconds))
    rep = consumer.stats.report
    EVENTS.labels(outcome="applied").set_function(lambda: rep.applied)
    EVENTS.labels(outcome="stale").set_function(lambda: rep.stale)
    EVENTS.labels(outcome="rejected").set_function(lambda: rep.rejected)
    FAILURES.set_function(lambda: consumer.stats.failures)


def run(args: argparse.Namespace, stop: threading.Event) -> ConsumerStats:
    """Consume until ``stop`` is set; returns what was done."""
    url = redis_dsn(args.redis_url, os.environ.get(SETTINGS_ENV["redis_password"]))
    store = RedisInventoryStore(url, prefix=args.redis_prefix, timeout_s=5.0)
    source = RedisStreamSource(
        url,
        stream_key(args.redis_prefix),
        group=args.group,
        consumer=args.consumer,
        claim_idle_ms=args.claim_idle_ms,
    )
    consumer = InventoryConsumer(source, store, batch=args.batch, block_ms=args.block_ms)
    if args.metrics_port:
        export_metrics(source, consumer)
        start_http_server(args.metrics_port)
    logging.getLogger(__name__).info(
        "inventory consumer %s on %s (group %s)", source.consumer, source.stream, args.group
    )
    try:
        return consumer.run(stop, progress_every_s=args.progress_every_s)
    finally:
        source.close()
        store.close()


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()

    def _handler(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


def main(argv: list[str] | None = None) -> None:
    """Run the consumer process."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    stats = run(args, stop_on_signals())
    logging.getLogger(__name__).info("inventory consumer stopped: %s", stats.as_dict())


if __name__ == "__main__":
    main()
