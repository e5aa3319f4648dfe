"""Feature computation, pure pandas/numpy (no Feast here; ``feature_repo/`` adapts to Feast).

Modules, in data-flow order: ``tables`` (read inputs, write contract tables, decay), ``priors``
(empirical-Bayes rates), ``user_view`` and ``item_views`` (the daily snapshot views), ``build``
(stage entry ``build_feature_tables``), ``on_demand`` (request and interaction features, shared
with serving), ``pit`` (point-in-time join), ``training`` (``build_training_set``), ``sla`` /
``freshness`` (staleness SLAs), ``snapshot`` (listing snapshot that ships with the index).
See ``docs/features.md``.
"""
