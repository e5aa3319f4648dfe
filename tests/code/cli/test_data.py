"""The data commands run end to end through the CLI and report what they did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


@pytest.mark.parametrize(
    "cmd", [["simulate"], ["ingest"], ["label"], ["import", "movielens"], ["import", "obd"]]
)
def test_every_data_command_has_help(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0 and "--out" in r.output


def test_simulate_ingest_label_through_the_cli(tmp_path: Path) -> None:
    raw, ing, lab = tmp_path / "raw", tmp_path / "ing", tmp_path / "lab"
    r = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(raw),
            "--seed",
            "3",
            "--listings",
            "1500",
            "--users",
            "300",
            "--sellers",
            "80",
            "--days",
            "2",
            "--checkouts-per-day",
            "40",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((raw / "manifest.json").read_text())["rows"]["listings"] == 1500
    store = tmp_path / "store"
    r = runner.invoke(
        app,
        [
            "ingest",
            str(raw),
            "--out",
            str(ing),
            "--now",
            "2026-11-01T00:00:00+00:00",
            "--artifact-root",
            str(store),
        ],
    )
    assert r.exit_code == 0, r.output
    version = (store / "ingested" / "LATEST").read_text().strip()
    assert (store / "ingested" / version / "ingest_report.json").read_bytes() == (
        ing / "ingest_report.json"
    ).read_bytes()
    report = json.loads((ing / "ingest_report.json").read_text())
    assert report["tables"]["listings"]["accepted"] == 1500
    r = runner.invoke(app, ["label", str(ing), "--out", str(lab)])
    assert r.exit_code == 0, r.output
    assert (lab / "impressions_labelled.parquet").exists() and (lab / "negatives.parquet").exists()


def test_ingest_of_a_missing_folder_is_a_one_line_error_with_exit_code_1(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"error: source folder not found: {tmp_path / 'nope'}"]
    assert not (tmp_path / "o").exists()


def test_ingest_with_a_bad_option_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    r = runner.invoke(
        app, ["ingest", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--now", "yesterday"]
    )
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: --now 'yesterday' is not an ISO time (e.g. 2026-11-01T00:00:00+00:00)"
    ]


def test_ingest_reports_quarantined_files_and_extra_columns(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    users = tmp_path / "raw" / "users"
    users.mkdir(parents=True)
    when = pa.array([dt.datetime(2026, 1, 1)] * 2, pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "user_id": [1, 2],
                "region": ["north", "south"],
                "device": ["web", "ios"],
                "signup_at": when,
                "nickname": ["a", "b"],
            }
        ),
        users / "part-0.parquet",
    )
    (users / "part-1.parquet").write_bytes(b"PAR1 but cut short")
    r = runner.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "ing"),
            "--now",
            "2026-11-01T00:00:00+00:00",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "quarantined file users/part-1.parquet: unreadable: " in r.output
    assert (
        "extra column users.nickname (not in the contract, not ingested) in users/part-0.parquet"
        in r.output
    )
    assert "files: 2 in, 1 ingested, 1 quarantined" in r.output
    report = json.loads((tmp_path / "ing" / "ingest_report.json").read_text())["tables"]["users"]
    assert (
        report["accepted"],
        report["files_in"],
        report["files_ok"],
        report["files_quarantined"],
    ) == (2, 2, 1, 1)


def test_import_obd_through_the_cli(tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "import",
            "obd",
            "--out",
            str(tmp_path / "obd"),
            "--behavior-policy",
            "bts",
            "--campaign",
            "women",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (
        json.loads((tmp_path / "obd" / "manifest.json").read_text())["rows"]["impressions.parquet"]
        == 10_000
    )
