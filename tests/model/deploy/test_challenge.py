"""Challenger and champion evaluated side by side on the same held-out logs, and the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from checkout_recs.deploy.challenge import challenger_gate, evaluate_side_by_side
from tests.fixtures_models import make_model_inputs, tiny_train_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> dict:  # noqa: ANN001
    """A ranker trained on the real labels, one trained on shuffled labels, and the held-out rows."""
    from checkout_recs.models.train import split_by_time, train_ranker_stage

    root = tmp_path_factory.mktemp("challenge")
    paths = make_model_inputs(root / "inputs")
    frame = pd.read_parquet(paths["training_set"])
    rng = np.random.default_rng(0)
    frame["propensity"] = rng.uniform(0.3, 1.0, len(frame))  # logged propensities for the OPE
    frame.to_parquet(paths["training_set"])
    shuffled = frame.copy()
    perm = rng.permutation(len(frame))
    shuffled[["clicked", "purchased"]] = frame[["clicked", "purchased"]].to_numpy()[perm]
    shuffled_path = root / "shuffled.parquet"
    shuffled.to_parquet(shuffled_path)
    cfg = tiny_train_config()
    train_ranker_stage(paths["training_set"], root / "good", cfg)
    train_ranker_stage(shuffled_path, root / "bad", cfg)
    _, held_out = split_by_time(frame, 0.2)
    return {"good": root / "good", "bad": root / "bad", "held_out": held_out}


def test_both_models_are_scored_on_the_same_rows_and_the_better_one_passes(two_models, tmp_path):
    res = evaluate_side_by_side(
        two_models["good"], two_models["held_out"], tmp_path, two_models["bad"], "3"
    )
    chal, champ = res["challenger"], res["champion"]
    assert champ is not None and res["champion_version"] == "3"
    assert chal["n_rows"] == champ["n_rows"] == len(two_models["held_out"])
    for k in ("logged_ndcg@6", "logged_auc_click", "ope_logged_purchase", "ope_n_rounds"):
        assert chal[k] == pytest.approx(champ[k])  # the same logs under both
    assert chal["auc_click"] > champ["auc_click"]
    decision = challenger_gate(res)
    assert decision.promote, decision.reasons
    assert decision.compared["auc_click"] == (chal["auc_click"], champ["auc_click"])
    assert all(r.startswith("vs champion") for r in decision.reasons)
    page = Path(res["report_html"]).read_text()
    assert "<th>challenger</th><th>champion</th><th>logged policy</th>" in page


def test_a_worse_challenger_is_refused_against_the_champion(two_models, tmp_path):
    res = evaluate_side_by_side(
        two_models["bad"], two_models["held_out"], tmp_path, two_models["good"], "3"
    )
    decision = challenger_gate(res, tolerance=0.005)
    assert not decision.promote
    assert any("auc_click" in r and "<" in r for r in decision.reasons)


def test_first_model_is_gated_against_the_logged_policy(two_models, tmp_path):
    res = evaluate_side_by_side(two_models["good"], two_models["held_out"], tmp_path)
    assert res["champion"] is None and "logged policy" in res["champion_note"]
    chal = res["challenger"]
    default = challenger_gate(res, min_ess=1.0)  # a first model: OPE reported, not gated
    assert default.compared == {} and default.promote == (
        chal["auc_click"] > 0.5 and chal["auc_purchase"] > 0.5
    )
    assert any(
        "ope_dr_purchase" in r and "not gated for a first model" in r for r in default.reasons
    )
    decision = challenger_gate(res, ope_tolerance=0.5, min_ess=1.0, first_model_ope=True)  # opt in
    assert set(decision.compared) == {"ope_dr_purchase"}
    assert decision.compared["ope_dr_purchase"] == (
        chal["ope_dr_purchase"],
        chal["ope_logged_purchase"],
    )
    ope_ok = chal["ope_dr_purchase"] >= chal["ope_logged_purchase"] * 0.5
    assert decision.promote == (ope_ok and chal["auc_click"] > 0.5 and chal["auc_purchase"] > 0.5)
    assert any("vs logged policy: ndcg@6" in r and "not gated" in r for r in decision.reasons)
    noisy = challenger_gate(
        res, min_ess=1e9, first_model_ope=True
    )  # too few effective rounds: not gated
    assert noisy.promote and "ope_dr_purchase" not in noisy.compared
    assert any("not gated (ESS" in r for r in noisy.reasons)
    chance = challenger_gate({**res, "challenger": {**chal, "auc_purchase": 0.49}}, min_ess=1e9)
    assert not chance.promote and any("no better than chance" in r for r in chance.reasons)


def test_unscorable_champion_falls_back_to_its_logged_metrics(two_models, tmp_path):
    res = evaluate_side_by_side(
        two_models["good"], two_models["held_out"], tmp_path, tmp_path / "missing", "4"
    )
    assert res["champion"] is None and "could not be scored" in res["champion_note"]
    better = {k: v * 2 for k, v in res["challenger"].items()}
    refused = challenger_gate(res, champion_fallback=better)
    assert not refused.promote and any("logged metrics" in r for r in refused.reasons)
