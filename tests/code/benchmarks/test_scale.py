"""The scale ladder end to end on a tiny rung (2,000 listings, two days of traffic): every step
through the shipped CLI, figures in the JSON, the HTML page, and resume."""

import json
import math
from pathlib import Path

import pytest

from benchmarks.scale import keep_earlier, main
from benchmarks.scale_report import exponent, exponents
from benchmarks.scale_steps import STEP_NAMES, TrafficModel, parse_size

TINY = ["--rungs", "2k", "--days", "2", "--checkouts-per-listing-day", "0.1", "--requests", "10"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    work, out = tmp_path_factory.mktemp("scale-work"), tmp_path_factory.mktemp("scale-out")
    args = [*TINY, "--workdir", str(work), "--out-dir", str(out)]
    return work, out, main([*args, "--not-run", "18M=too big for the test"])


@pytest.mark.slow
@pytest.mark.e2e
def test_every_step_has_positive_figures(ladder: tuple[Path, Path, dict]) -> None:
    _, out, result = ladder
    on_disk = json.loads((out / "scale.json").read_text())
    rung = on_disk["rungs"]["2k"]
    assert rung["status"] == "complete"
    assert list(rung["steps"]) == STEP_NAMES
    for step, fig in rung["steps"].items():
        for field in ("wall_s", "cpu_s", "peak_rss_mb", "tree_rss_mb", "rows_per_s"):
            assert fig[field] > 0, (step, field)
        assert fig["rows_in"] > 0 or fig["rows_out"] > 0, step
    assert rung["steps"]["serve"]["serve"]["requests"] == 10
    assert rung["steps"]["serve"]["serve"]["errors"] == 0
    assert rung["observed"]["impressions"] > 0
    assert on_disk["not_run"]["18M"] == "too big for the test"
    assert on_disk["not_run"]["1M"] == "not requested in this invocation"
    assert on_disk["host"]["load_1m_start"] >= 0
    assert result["rungs"]["2k"]["steps"] == rung["steps"]


@pytest.mark.slow
@pytest.mark.e2e
def test_html_page_has_the_plots(ladder: tuple[Path, Path, dict]) -> None:
    page = (ladder[1] / "scale.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Traffic model" in page


@pytest.mark.slow
@pytest.mark.e2e
def test_resume_skips_done_steps_and_reruns_a_missing_one(
    ladder: tuple[Path, Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    work, out, _ = ladder
    steps = work / "2k" / "steps"
    before = {n: (steps / f"{n}.json").read_text() for n in STEP_NAMES}
    (steps / "label.json").unlink()
    capsys.readouterr()
    main([*TINY, "--workdir", str(work), "--out-dir", str(out)])
    printed = capsys.readouterr().out
    assert "label        running" in printed
    for name in STEP_NAMES:
        if name != "label":
            assert f"{name:<12} done earlier, skipped" in printed
            assert (steps / f"{name}.json").read_text() == before[name]
    assert json.loads((steps / "label.json").read_text()) != json.loads(before["label"])


def test_exponent_of_linear_and_quadratic_growth() -> None:
    assert exponent(2.0, 10.0, 1_000_000, 5_000_000) == pytest.approx(1.0)
    assert exponent(1.0, 25.0, 1, 5) == pytest.approx(2.0)
    assert exponent(0.0, 1.0, 1, 5) is None
    rungs = {
        "1M": {"listings": 1_000_000, "steps": {"a": {"wall_s": 1, "cpu_s": 1, "peak_rss_mb": 9}}},
        "5M": {"listings": 5_000_000, "steps": {"a": {"wall_s": 5, "cpu_s": 25, "peak_rss_mb": 9}}},
    }
    e = exponents(rungs)["1M->5M"]["a"]
    assert e == {"wall": pytest.approx(1.0), "cpu": pytest.approx(2.0), "rss": 0.0}


def test_traffic_grows_with_the_catalogue() -> None:
    m = TrafficModel()
    small, big = m.for_listings(parse_size("1M")), m.for_listings(parse_size("18M"))
    assert big["checkouts"] == 18 * small["checkouts"]
    assert small["impressions"] == small["checkouts"] * 6
    assert math.isclose(big["users"] / small["users"], 18)
    assert parse_size("250k") == 250_000
    with pytest.raises(ValueError):
        parse_size("lots")


def test_a_failed_step_holds_back_only_the_steps_that_need_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.scale as scale

    ran: list[str] = []

    def fake(step, rung, requests, limit_mb):  # noqa: ANN001, ANN202 - stands in for measure_step
        ran.append(step.name)
        if step.name == "materialize":
            raise scale.StepFailed(step.name, -9, tmp_path / "none.log", "killed", {"wall_s": 1})
        return {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mb": 1.0, "rows_per_s": 1.0}

    monkeypatch.setattr(scale, "measure_step", fake)
    rung = scale.prepare_rung("3k", tmp_path, TrafficModel())
    assert scale.run_rung(rung, None, 1, 0.0) == ["materialize"]
    assert ran == STEP_NAMES
    failed = json.loads((tmp_path / "3k" / "steps" / "materialize.failed.json").read_text())
    assert failed["why"] == "killed"
    ran.clear()
    assert scale.run_rung(rung, None, 1, 0.0) == ["materialize"]
    assert ran == ["materialize"]  # the failed step re-runs alone
    ran.clear()
    assert scale.run_rung(rung, "label", 1, 0.0) == ["materialize"]
    assert ran == STEP_NAMES[STEP_NAMES.index("label") :]
    (tmp_path / "3k" / "steps" / "label.json").unlink()

    def always_fails(step, *_):  # noqa: ANN001, ANN202
        raise scale.StepFailed(step.name, 1, tmp_path / "none.log")

    monkeypatch.setattr(scale, "measure_step", always_fails)
    # label re-runs and fails; features and training_set are done (kept); materialize re-runs
    assert scale.run_rung(rung, None, 1, 0.0) == ["label", "materialize"]
    assert scale.collect(tmp_path)["3k"]["status"] == "failed at label, materialize"


def test_rungs_of_an_earlier_result_are_kept_and_marked(tmp_path: Path) -> None:
    """A rung re-run in this workdir replaces its earlier record; the others are kept, marked."""
    earlier = {
        "command": "python benchmarks/scale.py --rungs 100k 1M",
        "commit": "abc1234",
        "measured_at": "2026-12-01T00:00:00Z",
        "finished_at": "2026-12-01T01:00:00Z",
        "rungs": {
            "100k": {"listings": 100_000, "status": "complete", "steps": {"label": {}}},
            "1M": {"listings": 1_000_000, "status": "failed at features", "steps": {}},
        },
    }
    (tmp_path / "scale.json").write_text(json.dumps(earlier))
    now = {"1M": {"listings": 1_000_000, "status": "complete", "steps": {"label": {}}}}
    rungs = keep_earlier(dict(now), tmp_path / "scale.json")
    assert list(rungs) == ["100k", "1M"]  # by catalogue size
    assert rungs["1M"] == now["1M"]  # re-run here: this run's record, unmarked
    assert rungs["100k"]["earlier_run"]["commit"] == "abc1234"
    assert rungs["100k"]["steps"] == {"label": {}}
    kept_again = keep_earlier({}, _write(tmp_path / "again.json", {"rungs": rungs, "commit": "x"}))
    assert kept_again["100k"]["earlier_run"]["commit"] == "abc1234"  # the first mark stays
    assert keep_earlier(dict(now), tmp_path / "absent.json") == now


def _write(path: Path, body: dict) -> Path:
    path.write_text(json.dumps(body))
    return path
