"""drift_report: verdicts, files written, bad input refused; the drift CLI; the drift flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitoring.drift import DriftInputError, DriftSummary, drift_report, select_columns
from monitoring.thresholds import DriftThresholds, load_thresholds
from tests.fixtures_measure import REDIS_URL, redis_flag_fixture, traffic_frame  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # Evidently takes ~10 s to import on a loaded machine


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[DriftSummary, Path]:
    out = tmp_path_factory.mktemp("shifted")
    ref = traffic_frame(3000, seed=1)
    cur = traffic_frame(3000, seed=2, price_scale=1.6, region_p=(0.2, 0.3, 0.5))
    return drift_report(ref, cur, out), out


def test_shift_is_detected_and_files_are_written(shifted: tuple[DriftSummary, Path]) -> None:
    summary, out = shifted
    assert summary.drift_detected
    assert set(summary.drifted_columns) == {"price", "region"}
    assert summary.n_columns == 4  # price, score, region, device; ids and time are not compared
    assert summary.drifted_share == pytest.approx(0.5)
    on_disk = json.loads((out / "drift_summary.json").read_text())
    assert on_disk["drift_detected"] is True
    assert {c["column"]: c["drifted"] for c in on_disk["columns"]}["score"] is False
    html = (out / "drift_report.html").read_text()
    assert "<html" in html.lower() and len(html) > 10_000


def test_same_distribution_is_quiet(tmp_path: Path) -> None:
    summary = drift_report(traffic_frame(3000, seed=3), traffic_frame(3000, seed=4), tmp_path)
    assert not summary.drift_detected
    assert summary.n_drifted == 0
    assert all(c.score < c.threshold for c in summary.columns)


def test_critical_column_alone_confirms_drift(tmp_path: Path) -> None:
    ref, cur = traffic_frame(2000, seed=5), traffic_frame(2000, seed=6)
    cur["score"] = cur["score"] * 2.0
    t = DriftThresholds(drift_share=0.9, critical_columns=["score"])
    summary = drift_report(ref, cur, tmp_path, thresholds=t)
    assert summary.drifted_columns == ["score"]
    assert summary.drift_detected and "critical" in summary.reason


def test_parquet_folder_input_and_column_subset(tmp_path: Path) -> None:
    (tmp_path / "cur").mkdir()
    traffic_frame(800, seed=7).to_parquet(tmp_path / "ref.parquet")
    for i in range(2):
        traffic_frame(400, seed=8 + i, price_scale=2.0).to_parquet(
            tmp_path / "cur" / f"part-{i}.parquet"
        )
    summary = drift_report(
        tmp_path / "ref.parquet", tmp_path / "cur", tmp_path / "out", columns=["price"]
    )
    assert summary.current_rows == 800 and summary.n_columns == 1
    assert summary.drift_detected


def test_bad_inputs_are_refused_and_write_nothing(tmp_path: Path) -> None:
    ref = traffic_frame(100, seed=1)
    with pytest.raises(DriftInputError, match="missing"):
        drift_report(ref, ref, tmp_path / "a", columns=["nope"])
    with pytest.raises(DriftInputError, match="empty"):
        drift_report(ref, ref.iloc[:0], tmp_path / "b")
    with pytest.raises(DriftInputError, match="not a parquet"):
        drift_report(tmp_path / "missing.parquet", ref, tmp_path / "c")
    with pytest.raises(DriftInputError, match="null"):
        drift_report(ref, ref.assign(price=float("nan")), tmp_path / "d", columns=["price"])
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_select_columns_skips_ids_times_and_high_cardinality() -> None:
    df = traffic_frame(300, seed=2).assign(title=[f"t{i}" for i in range(300)])
    num, cat = select_columns(df, df, None, DriftThresholds())
    assert num == ["price", "score"] and cat == ["region", "device"]
    with pytest.raises(DriftInputError, match="cannot be compared"):
        select_columns(df, df, ["title"], DriftThresholds())


def test_thresholds_yaml_round_trip(tmp_path: Path) -> None:
    assert load_thresholds().drift_share == DriftThresholds().drift_share
    f = tmp_path / "t.yaml"
    f.write_text("drift:\n  drift_share: 0.5\n  num_threshold: 0.2\n")
    assert load_thresholds(f).num_threshold == 0.2
    f.write_text("drift:\n  drift_share: 2\n")
    with pytest.raises(ValueError):
        load_thresholds(f)


def test_cli_prints_verdict_exit_codes_and_sets_flag(tmp_path: Path, redis_flag) -> None:
    from cli.app import app
    from monitoring.flag import read_drift_flag

    client, key = redis_flag
    traffic_frame(600, seed=1).to_parquet(tmp_path / "ref.parquet")
    traffic_frame(600, seed=2, price_scale=3.0).to_parquet(tmp_path / "cur.parquet")
    runner = CliRunner()
    args = [
        "drift",
        "--reference",
        str(tmp_path / "ref.parquet"),
        "--current",
        str(tmp_path / "cur.parquet"),
    ]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "out"), "--columns", "price"])
    assert ok.exit_code == 0, ok.output
    assert "DRIFT" in ok.output and "price" in ok.output
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "o2"), "--columns", "nope"])
    assert bad.exit_code == 1
    # the drift flag: set via the CLI, then clear
    assert read_drift_flag(client, key) is None
    res = runner.invoke(
        app,
        [
            "drift-flag",
            "set",
            "--who",
            "t",
            "--why",
            "test",
            "--redis-url",
            REDIS_URL,
            "--key",
            key,
        ],
    )
    assert res.exit_code == 0, res.output
    assert read_drift_flag(client, key).who == "t"
    res = runner.invoke(
        app,
        [
            "drift-flag",
            "clear",
            "--who",
            "t2",
            "--why",
            "done",
            "--redis-url",
            REDIS_URL,
            "--key",
            key,
        ],
    )
    assert res.exit_code == 0 and read_drift_flag(client, key) is None
    shown = runner.invoke(app, ["drift-flag", "show", "--redis-url", REDIS_URL, "--key", key])
    assert "clear" in shown.output and "t2" in shown.output
