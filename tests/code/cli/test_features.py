"""``checkout-recs features build|training-set`` call the core functions and report counts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from tests.fixtures_features import make_feature_inputs


@pytest.mark.slow
def test_build_then_training_set(tmp_path):
    validated, labels = make_feature_inputs(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "features",
            "build",
            "--validated",
            str(validated.parent),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "features"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["views"]["user"]["rows"] == len(
        pd.read_parquet(tmp_path / "features" / "user.parquet")
    )
    res = runner.invoke(
        app,
        [
            "features",
            "training-set",
            "--labels",
            str(labels),
            "--features",
            str(tmp_path / "features"),
            "--validated",
            str(validated),
            "--out",
            str(tmp_path / "train.parquet"),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (
        summary["rows_in"]
        == summary["rows_out"]
        == len(pd.read_parquet(tmp_path / "train.parquet"))
    )


def test_training_set_refuses_an_unknown_join(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "features",
            "training-set",
            "--labels",
            str(tmp_path),
            "--features",
            str(tmp_path),
            "--validated",
            str(tmp_path),
            "--out",
            str(tmp_path / "t.parquet"),
            "--join",
            "spark",
        ],
    )
    assert res.exit_code == 2 and "pandas" in res.output


def test_build_without_events_fails_clearly(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "features",
            "build",
            "--validated",
            str(tmp_path),
            "--labels",
            str(tmp_path),
            "--out",
            str(tmp_path / "f"),
        ],
    )
    assert res.exit_code == 1 and "error: ValueError: no events" in res.output
