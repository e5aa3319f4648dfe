"""GMV per session of each serving revision, attributed from the decision log, for the ramp's
GMV guardrail.

Every answer is logged with the bundle it came from (``DECISIONS``: ``model_version`` and
``index_version``; the index version is unique per published bundle, so it tells a canary from
the champion even when only the index changed) and with the bundle the ranker that scored it
answered with (``predictor_version``, the predictor's ``bundle_version``). The pair
``(index_version, predictor_version)`` is what served: collocated (production) it is always one
bundle; with transformer and predictor split apart, KServe draws each component's revision
independently, so at a p % canary a share 2p(1-p) of answers pairs one bundle's transformer with
the other's ranker. Those **mismatched** answers belong to neither arm: they are left out of the
comparison and counted in the reading (``served_pairs``). An answer no ranker scored (the
fallback; ``predictor_version`` null, as in logs written before the column existed) counts for
its transformer's bundle.

Outcome events arrive later in the raw logs: clicks carry the ``request_id``; purchases are
attributed to the click of the same (user, listing) within the label window. The attribution is
the labelling code's (``data.labels.label_impressions``) and the analysis is the experiment
code's (``evaluation.experiments``: sessions, per-unit totals, delta-method CI), run on the two
arms:

    decision log ──matched pairs──explode──► impressions (request_id, slot, listing, propensity, arm)
    clicks, purchases, listings ──label_impressions──► clicked, purchased, price, take_rate
    ──sessions_from_impressions──► one row per request (gmv, sessions = 1)
    ──compare_delta("gmv_per_session")──► canary / champion ratio with its interval

The unit is the request: KServe's canary split routes each request independently.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from checkout_recs.serving.bundle_layout import read_bundle_info
from checkout_recs.storage import ArtifactStore, LocalArtifactStore

ArmKey = Literal["index_version", "model_version"]
DECISIONS_KIND = "decisions"


class GmvReading(BaseModel):
    """Canary vs champion GMV per session over the decisions since the ramp started."""

    ratio: float | None = Field(
        description="Canary / champion GMV per session (None: not measurable)."
    )
    ratio_lower: float | None = None
    ratio_upper: float | None = Field(
        default=None, description="Upper bound of the ratio's interval."
    )
    canary_gmv_per_session: float | None = Field(
        default=None, description="Currency units per session."
    )
    champion_gmv_per_session: float | None = None
    canary_sessions: int = 0
    champion_sessions: int = 0
    mismatched_answers: int = Field(
        default=0,
        description=(
            "Answers of either arm's bundle scored by another bundle's ranker: left out of both arms."
        ),
    )
    served_pairs: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Answers per served pair 'transformer bundle -> ranker bundle' ('-' when no ranker scored)."
        ),
    )
    note: str = ""


def mismatched(decisions: pd.DataFrame) -> pd.Series:
    """True for answers whose ranker answered with another bundle than the transformer's
    (``predictor_version`` set and not ``index_version``); False without the column."""
    if "predictor_version" not in decisions:
        return pd.Series(False, index=decisions.index)
    served = decisions["predictor_version"].astype("string")
    return (
        (served.notna() & served.ne(decisions["index_version"].astype("string")))
        .fillna(False)
        .astype(bool)
    )


def served_pairs(decisions: pd.DataFrame) -> dict[str, int]:
    """Answers per served pair ``"<index_version> -> <predictor_version>"`` (``-``: no ranker
    scored), most answers first."""
    if decisions.empty:
        return {}
    ranker = (
        (
            decisions["predictor_version"]
            if "predictor_version" in decisions
            else pd.Series(None, index=decisions.index)
        )
        .astype("string")
        .fillna("-")
    )
    counts = (
        decisions["index_version"].astype("string").fillna("-") + " -> " + ranker
    ).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def decision_impressions(
    decisions: pd.DataFrame, arm_key: ArmKey = "index_version"
) -> pd.DataFrame:
    """One row per shown slot from decision-log rows (``contract.DECISIONS`` columns).

    Returns
    -------
    pd.DataFrame
        ``contract.IMPRESSIONS`` columns (``order_id`` null, ``slot`` 0..5 in answer order,
        ``propensity`` as logged) plus ``arm`` (the value of ``arm_key``).
    """
    cols = [
        "request_id",
        "user_id",
        "region",
        "device",
        "policy",
        "event_timestamp",
        "item_ids",
        "propensities",
    ]
    if decisions.empty:
        return pd.DataFrame(
            columns=[*cols[:6], "listing_id", "propensity", "slot", "order_id", "arm"]
        )
    d = decisions[cols].assign(arm=decisions[arm_key].astype("string"))
    d = d.explode(["item_ids", "propensities"], ignore_index=True).dropna(subset=["item_ids"])
    d = d.rename(columns={"item_ids": "listing_id", "propensities": "propensity"})
    d["listing_id"] = d["listing_id"].astype("int64")
    d["propensity"] = d["propensity"].astype(float)
    d["slot"] = d.groupby("request_id", sort=False).cumcount().astype("int8")
    d["order_id"] = None
    return d


def arm_sessions(
    decisions: pd.DataFrame,
    clicks: pd.DataFrame,
    purchases: pd.DataFrame,
    listings: pd.DataFrame,
    canary: str,
    champion: str,
    window_s: int = 86_400,
    arm_key: ArmKey = "index_version",
) -> pd.DataFrame:
    """Per-request outcomes of the two arms: ``sessions_from_impressions`` rows plus ``arm``.

    Parameters
    ----------
    decisions : decision-log rows; answers of other bundles, and answers whose ranker served
        another bundle than their transformer (``mismatched``), are left out.
    clicks, purchases, listings : raw tables (``contract.CLICKS``, ``PURCHASES``, ``LISTINGS``).
    canary, champion : the ``arm_key`` values of the two bundles.
    window_s : purchase attributed to a click within this many seconds.

    Returns
    -------
    pd.DataFrame
        One row per request: ``arm`` (``treatment`` = canary, ``control`` = champion),
        ``sessions`` (1), ``gmv`` (currency units), ``clicks``, ``purchases``, ...
    """
    from checkout_recs.data.labels import (
        label_impressions,
    )  # lazy: keeps boto3 out of this module's import
    from checkout_recs.evaluation.experiments.ab import (
        sessions_from_impressions,  # lazy: keeps scipy out of this module's import
    )

    imp = decision_impressions(decisions[~mismatched(decisions)], arm_key)
    imp = imp[imp["arm"].isin([canary, champion])]
    arms = imp.groupby("request_id", sort=False)["arm"].first()
    if imp.empty:
        return pd.DataFrame(columns=["request_id", "arm", "sessions", "gmv"])
    labelled = label_impressions(imp.drop(columns="arm"), clicks, purchases, listings, window_s)
    sessions = sessions_from_impressions(labelled)
    sessions["arm"] = (
        sessions["request_id"].map(arms).map({canary: "treatment", champion: "control"})
    )
    return sessions


def gmv_reading(sessions: pd.DataFrame, min_sessions: int = 50, alpha: float = 0.05) -> GmvReading:
    """GMV per session, canary / champion, with a delta-method interval (request-level units).

    Returns a reading with ``ratio`` None (and a note) while either arm has fewer than
    ``min_sessions`` requests or the champion has no GMV yet.
    """
    from checkout_recs.evaluation.experiments.ab import (  # lazy: keeps scipy out of this module's import
        compare_delta,
        unit_totals,
    )

    n = sessions["arm"].value_counts() if len(sessions) else pd.Series(dtype=int)
    n_t, n_c = int(n.get("treatment", 0)), int(n.get("control", 0))
    base = GmvReading(ratio=None, canary_sessions=n_t, champion_sessions=n_c)
    if min(n_t, n_c) < min_sessions:
        base.note = (
            f"GMV per session: too few sessions (canary {n_t}, champion {n_c}; need {min_sessions})"
        )
        return base
    r = compare_delta(unit_totals(sessions, "request_id"), "gmv_per_session", alpha)
    base.canary_gmv_per_session, base.champion_gmv_per_session = r.treatment, r.control
    if not r.control > 0:
        base.note = "GMV per session: the champion has no attributed GMV yet"
        return base
    base.ratio = max(0.0, 1 + r.lift)
    if r.lift_lower == r.lift_lower:  # not NaN
        base.ratio_lower, base.ratio_upper = max(0.0, 1 + r.lift_lower), max(0.0, 1 + r.lift_upper)
    base.note = (
        f"GMV/session canary {r.treatment:.3f} vs champion {r.control:.3f} "
        f"(ratio {base.ratio:.3f}, {1 - alpha:.0%} CI {base.ratio_lower or float('nan'):.3f}"
        f"..{base.ratio_upper or float('nan'):.3f}; n {n_t}/{n_c})"
    )
    return base


# ----------------------------------------------------------------------------- reading the logs


def read_decisions(
    store: ArtifactStore,
    since: dt.datetime | None = None,
    cache: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Decision-log rows published to ``store`` (kind ``decisions``) at or after ``since``.

    ``cache`` (version -> rows) keeps parts already read: published parts never change.
    """
    cache = {} if cache is None else cache
    for version in store.versions(DECISIONS_KIND):
        if version in cache:
            continue
        if isinstance(store, LocalArtifactStore):
            cache[version] = pq.read_table(store.path(DECISIONS_KIND, version)).to_pandas()
        else:
            with tempfile.TemporaryDirectory(prefix="decisions-") as tmp:
                cache[version] = pq.read_table(
                    store.fetch(DECISIONS_KIND, version, Path(tmp) / version)
                ).to_pandas()
    frames = [f for f in cache.values() if len(f)]
    if not frames:
        return pd.DataFrame(columns=["request_id", "event_timestamp"])
    df = pd.concat(frames, ignore_index=True)
    if since is not None:
        df = df[df["event_timestamp"] >= pd.Timestamp(since)]
    return df


def folder_outcomes(folder: Path) -> Callable[[], dict[str, pd.DataFrame]]:
    """A loader of ``clicks``, ``purchases`` and ``listings`` from a raw-log or ingested folder
    (``<table>/*.parquet`` or ``validated/<table>/``), re-read at every call (logs keep arriving)."""
    from checkout_recs.data.ingest import (
        read_validated,
    )  # lazy: keeps boto3 out of this module's import

    def load() -> dict[str, pd.DataFrame]:
        return {t: read_validated(Path(folder), t) for t in ("clicks", "purchases", "listings")}

    return load


class DecisionLogGmv:
    """GMV source of the rollout: decisions from the artifact store, outcomes from a loader.

    Parameters
    ----------
    store : where serving publishes the decision log.
    outcomes : returns ``{"clicks", "purchases", "listings"}`` frames (``folder_outcomes``).
    resolve_arm : bundle URI -> its ``arm_key`` value (default: ``bundle_arm``, the bundle's
        ``index_version``, for ``arm_key="index_version"``); resolved once per URI.
    min_sessions, alpha, window_s : see ``gmv_reading`` and ``arm_sessions``.
    """

    def __init__(
        self,
        store: ArtifactStore,
        outcomes: Callable[[], dict[str, pd.DataFrame]],
        resolve_arm: Callable[[str], str] | None = None,
        arm_key: ArmKey = "index_version",
        min_sessions: int = 50,
        alpha: float = 0.05,
        window_s: int = 86_400,
    ) -> None:
        self.store, self.outcomes, self.arm_key = store, outcomes, arm_key
        if resolve_arm is None and arm_key != "index_version":
            raise ValueError("resolve_arm is needed for arm_key other than index_version")
        self.resolve_arm = resolve_arm or (lambda uri: bundle_arm(store, uri))
        self._arms: dict[str, str] = {}
        self.min_sessions, self.alpha, self.window_s = min_sessions, alpha, window_s
        self._parts: dict[str, pd.DataFrame] = {}

    def compare(self, candidate_uri: str, champion_uri: str, since: dt.datetime) -> GmvReading:
        """Canary (``candidate_uri``) vs champion GMV per session on answers since ``since``."""
        for uri in (candidate_uri, champion_uri):
            if uri not in self._arms:
                self._arms[uri] = self.resolve_arm(uri)
        canary, champion = self._arms[candidate_uri], self._arms[champion_uri]
        decisions = read_decisions(self.store, since, self._parts)
        ev = self.outcomes()
        sessions = arm_sessions(
            decisions,
            ev["clicks"],
            ev["purchases"],
            ev["listings"],
            canary,
            champion,
            self.window_s,
            self.arm_key,
        )
        return with_pairs(
            gmv_reading(sessions, self.min_sessions, self.alpha),
            decisions,
            canary,
            champion,
            self.arm_key,
        )


def with_pairs(
    reading: GmvReading,
    decisions: pd.DataFrame,
    canary: str,
    champion: str,
    arm_key: ArmKey = "index_version",
) -> GmvReading:
    """``reading`` with the served pairs of the answers whose transformer is either arm's, and
    those scored by another bundle's ranker counted (and named in the note when there are any)."""
    if decisions.empty or arm_key not in decisions:
        return reading
    ours = decisions[
        decisions[arm_key].astype("string").isin([canary, champion]).fillna(False).astype(bool)
    ]
    bad = mismatched(ours)
    note = reading.note
    if bad.any():
        named = ", ".join(f"{pair} {n}" for pair, n in served_pairs(ours[bad]).items())
        note = f"{note}; {int(bad.sum())} answers left out, scored by another bundle's ranker ({named})"
    return reading.model_copy(
        update={
            "served_pairs": served_pairs(ours),
            "mismatched_answers": int(bad.sum()),
            "note": note,
        }
    )


def bundle_arm(store: ArtifactStore, bundle_uri: str) -> str:
    """The ``index_version`` (``bundle.json``) of a bundle published in ``store``: the value
    serving logs as ``index_version`` for every answer of that bundle.

    Raises ``FileNotFoundError`` when the URI is not a bundle of this store or has no index version.
    """

    prefix = store.uri("bundle", "")
    if not bundle_uri.startswith(prefix):
        raise FileNotFoundError(f"{bundle_uri} is not a bundle of {store.root}")
    version = bundle_uri[len(prefix) :].strip("/")
    if isinstance(store, LocalArtifactStore):
        info = read_bundle_info(store.path("bundle", version))
    else:
        with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
            info = read_bundle_info(store.fetch("bundle", version, Path(tmp)))
    if not info.index_version:
        raise FileNotFoundError(f"{bundle_uri}/bundle.json has no index_version")
    return str(info.index_version)
