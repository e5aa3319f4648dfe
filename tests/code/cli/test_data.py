"""The data commands run end to end through the CLI and report what they did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [["simulate"], ["ingest"], ["label"], ["import", "movielens"], ["import", "obd"]])
def test_every_data_command_has_help(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0 and "--out" in r.output


def test_simulate_ingest_label_through_the_cli(tmp_path: Path) -> None:
    raw, ing, lab = tmp_path / "raw", tmp_path / "ing", tmp_path / "lab"
    r = runner.invoke(app, ["simulate", "--out", str(raw), "--seed", "3", "--listings", "1500", "--users", "300",
                            "--sellers", "80", "--days", "2", "--checkouts-per-day", "40"])
    assert r.exit_code == 0, r.output
    assert json.loads((raw / "manifest.json").read_text())["rows"]["listings"] == 1500
    store = tmp_path / "store"
    r = runner.invoke(app, ["ingest", str(raw), "--out", str(ing), "--now", "2026-11-01T00:00:00+00:00",
                            "--publish-to", str(store)])
    assert r.exit_code == 0, r.output
    version = (store / "ingested" / "LATEST").read_text().strip()
    assert (store / "ingested" / version / "ingest_report.json").read_bytes() == (ing / "ingest_report.json").read_bytes()
    report = json.loads((ing / "ingest_report.json").read_text())
    assert report["tables"]["listings"]["accepted"] == 1500
    r = runner.invoke(app, ["label", str(ing), "--out", str(lab)])
    assert r.exit_code == 0, r.output
    assert (lab / "impressions_labelled.parquet").exists() and (lab / "negatives.parquet").exists()


def test_ingest_of_a_missing_folder_fails_with_a_message(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert "source folder not found" in str(r.exception) + r.output


def test_import_obd_through_the_cli(tmp_path: Path) -> None:
    r = runner.invoke(app, ["import", "obd", "--out", str(tmp_path / "obd"), "--behavior-policy", "bts",
                            "--campaign", "women"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "obd" / "manifest.json").read_text())["rows"]["impressions.parquet"] == 10_000
