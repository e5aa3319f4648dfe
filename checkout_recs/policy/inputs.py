"""What the policy reads of a prepared request, stated as a structural type.

The policy (``engine.PolicyEngine``, ``exploration.Explorer``) takes one prepared request per
call. It is produced by the layer above (``checkout_recs.serving.recommender.Prepared``), which
the policy does not import: ``PolicyInput`` lists exactly the fields it reads, and ``Prepared``
satisfies it structurally (mypy checks the call in ``Recommender.decide``). Tests and benchmarks
may pass any object with these fields.

The members are read-only properties, so a plain (mutable) dataclass field satisfies them and
the policy promises not to assign them.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import numpy as np


class PolicyRequest(Protocol):
    """The two request fields the policy reads (``contract.PostCheckoutRequest`` has them)."""

    @property
    def timestamp(self) -> dt.datetime | None:
        """Time of the checkout; its UTC day selects the exploration ledger's day (None: now)."""
        ...

    @property
    def region(self) -> str:
        """Buyer's region; the slot reasons mention local listings."""
        ...


class PolicyInput(Protocol):
    """A prepared request as the policy reads it (rows are ``ItemCatalog`` row indices)."""

    @property
    def request(self) -> PolicyRequest:
        """The checkout request (``timestamp``, ``region``)."""
        ...

    @property
    def session_class(self) -> str:
        """``new_user``, ``returning`` or ``high_value`` (sets the exploration probability)."""
        ...

    @property
    def basket_rows(self) -> np.ndarray:
        """int64 (b,) catalogue rows of the purchased items (those in the catalogue)."""
        ...

    @property
    def cand_rows(self) -> np.ndarray:
        """int64 (n,) catalogue rows of the in-stock candidates, aligned with the scores."""
        ...

    @property
    def cand_sources(self) -> np.ndarray:
        """object (n,) str source of each candidate (``retrieval.candidates.SOURCES``), aligned with ``cand_rows``."""
        ...

    @property
    def fb_rows(self) -> np.ndarray:
        """int64 (m,) catalogue rows of the in-stock fallback pool, in fallback order."""
        ...

    @property
    def fb_sources(self) -> np.ndarray:
        """object (m,) str source of each fallback row (``complement`` / ``popular``), aligned with ``fb_rows``."""
        ...
