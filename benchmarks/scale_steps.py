"""The scale ladder's rungs, traffic model and steps: each step is one shipped CLI command.

A rung is a catalogue size; ``TrafficModel`` turns it into the simulator's options (traffic
grows with the catalogue). ``STEPS`` lists the pipeline's steps in order, each as the
``checkout-recs`` command lines a user would type (``serve`` is driven by ``scale_measure``),
with the paths whose rows are its input and output.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("checkout-recs"))
SIM_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)  # SimConfig.start's default
RUNGS = {"1M": 1_000_000, "5M": 5_000_000, "18M": 18_000_000}


@dataclass(frozen=True)
class TrafficModel:
    """Traffic per listing, scaled by the rung's catalogue size (the one place it is stated).

    The defaults put a rung at 0.005 checkouts per listing per day (a large second-hand or
    handmade marketplace sells a few in a thousand of its live listings a day; the demo's
    5,000 listings at 300 checkouts/day are 12x denser), one active buyer per ten listings in the
    window and one seller per fourteen listings. Each checkout is one post-checkout request with
    ``impressions_per_checkout`` slots. Clicks and purchases are not parameters: the simulator
    draws them from its hidden truth (``simulate/truth.py``: P(click) = examination[slot] *
    device * sigmoid(relevance), a0 = -2.6; P(purchase | click) = sigmoid(b0 + ...), b0 = -1.4),
    which gives the rates ``click_rate`` and ``purchase_per_click`` (6,169 clicks of 42,000
    impressions and 2,038 purchases on a 100k-listing run of this model, seed 7; the report
    records each rung's own).
    """

    checkouts_per_listing_day: float = 0.005
    users_per_listing: float = 0.1
    sellers_per_listing: float = 1 / 14
    days: int = 14
    impressions_per_checkout: int = 6
    click_rate: float = 0.147
    purchase_per_click: float = 0.33

    def for_listings(self, n: int) -> dict[str, int]:
        """Simulator options and the expected traffic for a catalogue of ``n`` listings."""
        per_day = max(1, round(n * self.checkouts_per_listing_day))
        imps = per_day * self.days * self.impressions_per_checkout
        return {
            "listings": n,
            "users": max(1, round(n * self.users_per_listing)),
            "sellers": max(1, round(n * self.sellers_per_listing)),
            "days": self.days,
            "checkouts_per_day": per_day,
            "checkouts": per_day * self.days,
            "impressions": imps,
            "expected_clicks": round(imps * self.click_rate),
            "expected_purchases": round(imps * self.click_rate * self.purchase_per_click),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_size(name: str) -> int:
    """``"1M"`` -> 1,000,000, ``"2k"`` -> 2,000, ``"5000"`` -> 5,000."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", name.strip())
    if not m:
        raise ValueError(f"not a rung size: {name!r} (e.g. 1M, 250k, 5000)")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class Rung:
    """One rung: its name, folder and the simulator options of its traffic."""

    name: str
    work: Path
    sim: dict[str, int]

    @property
    def end(self) -> str:
        """The end of the simulated run, ISO: ingest's ``--now`` and materialize's ``--end``."""
        return (SIM_START + dt.timedelta(days=self.sim["days"])).isoformat()

    def p(self, *parts: str) -> Path:
        return self.work.joinpath(*parts)


@dataclass(frozen=True)
class Step:
    """A step: its command lines, and the paths whose parquet rows are its input and output."""

    name: str
    commands: Callable[[Rung], list[list[str]]]
    inputs: Callable[[Rung], list[Path]]
    outputs: Callable[[Rung], list[Path]]


def _cmds(r: Rung, *argv: str) -> list[list[str]]:
    return [[CLI, *argv]]


STEPS: list[Step] = [
    Step(
        "simulate",
        lambda r: _cmds(
            r,
            "simulate",
            "--out",
            str(r.p("raw")),
            *(f"--{k.replace('_', '-')}={r.sim[k]}" for k in ("listings", "users", "sellers")),
            f"--days={r.sim['days']}",
            f"--checkouts-per-day={r.sim['checkouts_per_day']}",
        ),
        lambda r: [],
        lambda r: [r.p("raw")],
    ),
    Step(
        "ingest",
        lambda r: _cmds(
            r, "ingest", str(r.p("raw")), "--out", str(r.p("ingested")), "--now", r.end
        ),
        lambda r: [r.p("raw")],
        lambda r: [r.p("ingested", "validated")],
    ),
    Step(
        "label",
        lambda r: _cmds(r, "label", str(r.p("ingested")), "--out", str(r.p("labels"))),
        lambda r: [r.p("ingested", "validated")],
        lambda r: [r.p("labels")],
    ),
    Step(
        "features",
        lambda r: _cmds(
            r,
            "features",
            "build",
            *("--validated", str(r.p("ingested")), "--labels", str(r.p("labels"))),
            *("--out", str(r.p("features"))),
        ),
        lambda r: [r.p("ingested", "validated"), r.p("labels")],
        lambda r: [r.p("features")],
    ),
    Step(
        "materialize",
        lambda r: [
            [CLI, "features", "apply", "--features", str(r.p("features"))]
            + ["--feast-work-dir", str(r.p("feast"))],
            [CLI, "features", "materialize", "--features", str(r.p("features"))]
            + ["--feast-work-dir", str(r.p("feast")), "--end", r.end],
        ],
        lambda r: [r.p("features")],
        lambda r: [r.p("feast")],
    ),
    Step(
        "training_set",
        lambda r: _cmds(
            r,
            "features",
            "training-set",
            *("--labels", str(r.p("labels")), "--features", str(r.p("features"))),
            *("--validated", str(r.p("ingested")), "--out", str(r.p("training_set.parquet"))),
        ),
        lambda r: [r.p("labels", "impressions_labelled.parquet")],
        lambda r: [r.p("training_set.parquet")],
    ),
    Step(
        "train",
        lambda r: _cmds(
            r,
            "train",
            *("--training-set", str(r.p("training_set.parquet")), "--labels", str(r.p("labels"))),
            *("--features", str(r.p("features")), "--out", str(r.p("model"))),
        ),
        lambda r: [r.p("training_set.parquet")],
        lambda r: [],
    ),
    Step(
        "index",
        lambda r: _cmds(
            r,
            "build-index",
            *("--model", str(r.p("model")), "--features", str(r.p("features"))),
            *("--labels", str(r.p("labels")), "--out", str(r.p("index"))),
        ),
        lambda r: [r.p("features", "listing.parquet")],
        lambda r: [r.p("index")],
    ),
    Step(
        "bundle",
        lambda r: _cmds(
            r,
            "build-bundle",
            *("--model", str(r.p("model")), "--labels", str(r.p("labels"))),
            *("--features", str(r.p("features")), "--out", str(r.p("bundle"))),
        ),
        lambda r: [r.p("features", "listing.parquet")],
        lambda r: [r.p("bundle")],
    ),
    Step("serve", lambda r: [], lambda r: [r.p("bundle", "index")], lambda r: []),
]
STEP_NAMES = [s.name for s in STEPS]
#: Folders a step appends to, removed before it runs so that a re-run measures the whole step
#: (``features materialize`` is incremental from the end of the last window it logged).
CLEAN_BEFORE: dict[str, tuple[str, ...]] = {"materialize": ("feast",)}
#: The steps whose outputs each step reads: after a failure, only the steps that need it (directly
#: or through another) wait; the rest still run (``training_set`` does not read the Feast store).
NEEDS: dict[str, tuple[str, ...]] = {
    "simulate": (),
    "ingest": ("simulate",),
    "label": ("ingest",),
    "features": ("ingest", "label"),
    "materialize": ("features",),
    "training_set": ("label", "features"),
    "train": ("training_set",),
    "index": ("train",),
    "bundle": ("train",),
    "serve": ("bundle",),
}


def parquet_rows(paths: list[Path]) -> int:
    """Rows in every parquet file under ``paths`` (metadata only), online rows for a Feast folder;
    folders whose name starts with ``_`` (the simulator's hidden truth) are left out."""
    total = 0
    for path in paths:
        files = (
            [path] if path.is_file() else sorted(path.rglob("*.parquet")) if path.is_dir() else []
        )
        for f in files:
            if not any(part.startswith("_") for part in f.relative_to(path.parent).parts):
                total += pq.ParquetFile(f).metadata.num_rows
        if path.is_dir() and (path / "online_store.db").exists():
            total += _sqlite_rows(path / "online_store.db")
    return total


def _sqlite_rows(db: Path) -> int:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return sum(con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names)
