"""The naive request path, kept only as the benchmark's baseline.

What a straightforward KServe + Feast transformer does (and the design avoids): read every
candidate's listing and seller features from the Feast online store (hundreds of entity rows per
request), join them in pandas, build the ranker matrix from the frame, and send it to the
predictor as a JSON tensor. ``NaiveItemFeatures.matrix`` replaces the snapshot-aligned
``RankerInputPlan``; the transformer runs it in a worker thread so the event loop is not blocked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from checkout_recs.models.ranker_features import ranker_matrix


class NaiveItemFeatures:
    """Per-request Feast reads of candidate listing + seller features (see module docstring)."""

    def __init__(self, adapter: Any, bundle: Any) -> None:
        self.adapter = adapter
        self.bundle = bundle

    def matrix(self, prep: Any) -> np.ndarray | None:
        """Ranker matrix float32 (n, d) for ``prep.cand_rows`` built from Feast online reads."""

        b, cat = self.bundle, self.bundle.catalog
        ids = cat.listing_id[prep.cand_rows].tolist()
        listing = pd.DataFrame(self.adapter.online_features("listing", "listing_id", ids))
        sellers = [int(s) for s in listing["seller_id"].fillna(-1).tolist()]
        seller = pd.DataFrame(self.adapter.online_features("seller", "seller_id", sellers))
        frame = pd.concat(
            [
                listing.reset_index(drop=True),
                seller.drop(columns=["seller_id"]).reset_index(drop=True),
            ],
            axis=1,
        )
        req = prep.request
        ts = pd.Timestamp(req.timestamp) if req.timestamp else pd.Timestamp.now(tz="UTC")
        extra: dict[str, Any] = {"device": req.device, "event_timestamp": ts}
        for k, v in (prep.user or {}).items():
            if k in ("user_id", "region", "event_timestamp") or isinstance(v, list | np.ndarray):
                continue
            extra["user_top_category_id" if k == "top_category_id" else k] = v
        req_f, pair_f = b._on_demand(req, ts, prep.cand_rows, prep.basket_rows)
        extra.update(req_f)
        extra.update(pair_f)
        frame = frame.assign(
            **{
                k: v
                for k, v in extra.items()
                if k not in frame.columns or k in ("device", "event_timestamp")
            }
        )
        return ranker_matrix(frame, b.feature_names)
