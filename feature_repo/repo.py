"""Definitions module that ``feast apply`` (run with ``-c feature_repo``) picks up.

The features parquet lives in a run folder: set ``CHECKOUT_RECS_FEATURES_DIR`` (a folder or
``s3://...``) before ``feast apply``; it defaults to ``runs/latest/features``.
"""

from __future__ import annotations

import os

from feature_repo.definitions import make_definitions

_objects = make_definitions(
    os.environ.get("CHECKOUT_RECS_FEATURES_DIR", "runs/latest/features"),
    os.environ.get("CHECKOUT_RECS_S3_ENDPOINT_URL") or None,
)
user, listing, seller, category_a, category_b = _objects[:5]
user_view, listing_view, seller_view, category_pair_view = _objects[5:]
