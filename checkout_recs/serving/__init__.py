"""The request path: one checkout in, exactly six in-stock listings out.

Modules, in request order:

* ``switches`` — kill switch and drift flag (read first: either sends the answer to the fallback);
* ``bundle`` — what serving loads (``ServingBundle``), its layout and its one writer;
* ``ranker_input`` — the ranker's input matrix, item block precomputed at load;
* ``inventory`` — live inventory (sold / locked / delisted listings), memory or Redis;
  ``inventory_stream`` — the inventory event stream and its consumer; ``inventory_replica`` — the
  in-process replica of it that the transformer's lookups read;
* ``recommender`` — ``Recommender``: prepare (features, candidates, inventory, matrix) ->
  settle (inventory answer) -> decide (the policy: six, propensities, reasons);
* ``decisions`` — one decision-log row per answer, and finding it again (``explain``);
* ``decision_writer`` — the decision log's background writer to the artifact store.

The KServe transformer (``inference/transformer.py``) and offline evaluation both call this
package, so offline figures describe what serving does.
"""

from __future__ import annotations

from checkout_recs.serving.bundle import (
    CandidateSource,
    CatalogCandidates,
    GeneratorCandidates,
    ServingBundle,
    load_candidate_source,
)
from checkout_recs.serving.decision_writer import DecisionLog
from checkout_recs.serving.decisions import decision_record, find_decision
from checkout_recs.serving.inventory import (
    DEFAULT_LOCK_TTL_S,
    ApplyReport,
    InventoryStore,
    InventoryUnavailable,
    MemoryInventoryStore,
    RedisInventoryStore,
    open_inventory,
)
from checkout_recs.serving.ranker_input import RankerInputPlan
from checkout_recs.serving.recommender import (
    SNAPSHOT_CANDIDATES,
    Decision,
    Prepared,
    Recommender,
    TableUserFeatures,
    UserFeatureSource,
)
from checkout_recs.serving.switches import DRIFT_FLAG_KEY, KILL_SWITCH_KEY, Switches, SwitchState

__all__ = [
    "KILL_SWITCH_KEY",
    "DRIFT_FLAG_KEY",
    "SwitchState",
    "Switches",
    "CandidateSource",
    "CatalogCandidates",
    "GeneratorCandidates",
    "load_candidate_source",
    "ServingBundle",
    "RankerInputPlan",
    "DEFAULT_LOCK_TTL_S",
    "InventoryUnavailable",
    "ApplyReport",
    "InventoryStore",
    "MemoryInventoryStore",
    "RedisInventoryStore",
    "open_inventory",
    "SNAPSHOT_CANDIDATES",
    "UserFeatureSource",
    "TableUserFeatures",
    "Prepared",
    "Decision",
    "Recommender",
    "decision_record",
    "find_decision",
    "DecisionLog",
]
