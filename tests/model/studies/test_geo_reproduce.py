"""`experiment reproduce` gives the figures of the manual recipe, step for step.

At a small size, ``checkout-recs experiment reproduce`` is compared with the four steps run by
hand: the world (``run_simulation(geo_world_config(...))``), ``experiment pre-period``, the
training commands one by one (``ingest``, ``label``, ``features build``, ``features
training-set --join pandas``, ``train``, ``build-bundle``) and ``experiment simulate`` with the
programme profile. Every figure must be identical.

The seed-5 run at full size (``test_seed5_reproduces_the_committed_figures``) took 43.5 minutes
on the shared 2-core box at load 8-15 (about 10 on a quiet one), so it runs only with
``CHECKOUT_RECS_SEED5=1`` (it is not part of ``make test``); ``checkout-recs experiment reproduce
--out DIR --seed 5`` is the same run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from checkout_recs.simulate.run import run_simulation
from checkout_recs.studies.geo_experiment import geo_world_config
from checkout_recs.studies.geo_reproduce import (
    PROGRAMME,
    STEPS,
    ReproduceSpec,
    committed_figures,
    reproduce,
    run_end,
)
from cli.app import app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # two small pipelines on a loaded box

SEED, DAYS, PRE_DAYS = 3, 8, 4
SMALL = {"n_sellers": 200, "n_listings": 4_000, "n_users": 600, "checkouts_per_day": 100}


def _cli(*args: str) -> None:
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    base = tmp_path_factory.mktemp("reproduce")
    a, b = base / "a", base / "b"
    _cli("experiment", "reproduce", "--out", str(a), "--seed", str(SEED), "--days", str(DAYS),
         "--pre-days", str(PRE_DAYS), "--world-overrides", json.dumps(SMALL))  # fmt: skip
    run_simulation(
        geo_world_config(SEED, DAYS, overrides=SMALL), b / "raw"
    )  # = `experiment world` at this size
    _cli(
        "experiment",
        "pre-period",
        "--raw",
        str(b / "raw"),
        "--out",
        str(b / "pre_raw"),
        "--days",
        str(PRE_DAYS),
    )
    r = b / "run"
    _cli(
        "ingest",
        str(b / "pre_raw"),
        "--out",
        str(r / "ingested"),
        "--now",
        run_end(b / "raw").isoformat(),
    )
    _cli("label", str(r / "ingested"), "--out", str(r / "labels"))
    _cli("features", "build", "--validated", str(r / "ingested"), "--labels", str(r / "labels"),
         "--out", str(r / "features"))  # fmt: skip
    _cli("features", "training-set", "--labels", str(r / "labels"), "--features", str(r / "features"),
         "--validated", str(r / "ingested"), "--out", str(r / "training_set.parquet"), "--join", "pandas")  # fmt: skip
    _cli("train", "--training-set", str(r / "training_set.parquet"), "--labels", str(r / "labels"),
         "--features", str(r / "features"), "--out", str(r / "model"))  # fmt: skip
    _cli("build-bundle", "--model", str(r / "model"), "--labels", str(r / "labels"), "--features",
         str(r / "features"), "--out", str(r / "bundle"))  # fmt: skip
    _cli("experiment", "simulate", "--out", str(b / "sim"), "--bundle", str(r / "bundle"), "--users",
         str(r / "features" / "user.parquet"), "--raw", str(b / "raw"), "--pre-days",
         str(PRE_DAYS), "--test-days", str(DAYS - PRE_DAYS), "--policy-config", str(PROGRAMME))  # fmt: skip
    return (
        json.loads((a / "results.json").read_text()),
        json.loads((b / "sim" / "results.json").read_text()),
        a,
    )


FIGURES = (
    "true_uplift",
    "did",
    "did_realised",
    "inference",
    "inference_realised",
    "table",
    "policy_config",
    "serving_stats",
    "exploration_ledger",
    "exposure_floors",
    "world",
)


def test_reproduce_gives_the_figures_of_the_manual_steps(runs) -> None:
    got, manual, _ = runs
    for key in FIGURES:
        assert got[key] == manual[key], key
    assert (
        got["policy_config"]["exposure"]["min_cold_share"] == 1.0
    )  # the programme profile by default
    assert got["serving_stats"]["requests"] > 0


def test_reproduce_records_steps_timings_and_the_report(runs) -> None:
    got, _, out = runs
    rep = got["reproduce"]
    assert list(rep["seconds"]) == [*STEPS, "total"] and all(
        v >= 0 for v in rep["seconds"].values()
    )
    assert set(rep["training_seconds"]) == {
        "ingest",
        "label",
        "features",
        "training set",
        "train",
        "bundle",
    }
    assert (
        rep["profile"] == "programme" and rep["committed"] is None
    )  # a small world was never committed
    assert rep["world_overrides"] == SMALL and got["world"]["n_listings"] == SMALL["n_listings"]
    html = (out / "report.html").read_text()
    for heading in (
        "Permutation over region assignments (gmv)",
        "Placebo periods (realised GMV)",
        "Power by number of regions",
        "Results table",
    ):
        assert heading in html
    perm = got["inference"]["permutation"]
    assert perm["n_assignments"] == 6 and perm["min_p_two_sided"] == pytest.approx(1 / 3)


def test_committed_figures_are_found_for_seed_5_and_6() -> None:
    programme = committed_figures(5, "programme")
    assert programme is not None and programme["did"]["uplift"] == pytest.approx(0.3820, abs=1e-4)
    defaults = committed_figures(5, "defaults")
    assert defaults is not None and defaults["true_uplift"] == pytest.approx(0.4845, abs=1e-4)
    assert (
        committed_figures(6, "defaults") is not None and committed_figures(7, "programme") is None
    )


@pytest.mark.skipif(
    os.environ.get("CHECKOUT_RECS_SEED5") != "1",
    reason="4-5 min at load ~2, 44 min on the loaded 2-core box: set CHECKOUT_RECS_SEED5=1 (not in `make test`)",
)
@pytest.mark.timeout(7200)
def test_seed5_reproduces_the_committed_figures(tmp_path: Path) -> None:
    payload, _ = reproduce(tmp_path, ReproduceSpec(seed=5))
    rows = payload["reproduce"]["committed"]
    assert rows, "no committed figures for seed 5"
    differ = [r for r in rows if not r["same"]]
    assert not differ, differ
