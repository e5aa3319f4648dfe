"""CLI conventions every command follows (``cli/common.py`` holds the exit-status rule):
exit 1 for runtime failures and 2 for usage errors, each with one ``error:`` line; an unhandled
exception is one line too unless ``--debug``; ``--version``; ``drift --fail-on-drift``; one option
name per concept, each with its standard environment variable."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.app import app
from cli.common import fail, progress
from tests.fixtures_measure import traffic_frame
from tests.fixtures_ops_gmv import _mlflow_template, logged_run, mlflow_db  # noqa: F401

runner = CliRunner()


def _lines(output: str) -> list[str]:
    return output.strip().splitlines()


# ----------------------------------------------------------------------------------- exit status


def test_a_runtime_failure_exits_1_with_one_error_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["explain", "nope", "--artifact-root", str(tmp_path)])
    assert res.exit_code == 1
    assert _lines(res.output) == [
        f"error: request nope is not in the decision log under {tmp_path}"
    ]


def test_a_usage_error_exits_2_with_one_error_line() -> None:
    res = runner.invoke(
        app,
        [
            "recommend",
            "--url",
            "http://127.0.0.1:9",
            "--user",
            "1",
            "--region",
            "north",
            "--items",
            "1,two",
        ],
    )
    assert res.exit_code == 2
    assert len(_lines(res.output)) == 1 and res.output.startswith(
        "error: --items must be comma-separated integers"
    )


def test_click_usage_errors_exit_2_too() -> None:
    assert runner.invoke(app, ["explain", "x", "--no-such-option"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_fail_exits_1_or_2_and_nothing_else() -> None:
    assert fail("x").exit_code == 1 and fail("x", 2).exit_code == 2
    with pytest.raises(ValueError):
        fail("x", 3)


@pytest.fixture
def exploding_explain(monkeypatch: pytest.MonkeyPatch) -> None:
    """``explain`` whose decision-log lookup raises an exception no command handles."""
    import checkout_recs.serving.decisions as decisions

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(decisions, "find_decision", boom)


def test_an_unhandled_exception_is_one_error_line_and_exit_1(
    exploding_explain: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHECKOUT_RECS_DEBUG", raising=False)
    res = runner.invoke(app, ["explain", "r1", "--artifact-root", str(tmp_path)])
    assert res.exit_code == 1
    assert _lines(res.output) == [
        "error: RuntimeError: boom second line (--debug for the traceback)"
    ]
    assert "Traceback" not in res.output


@pytest.mark.parametrize(("args", "env"), [(["--debug"], {}), ([], {"CHECKOUT_RECS_DEBUG": "1"})])
def test_debug_shows_the_exception_itself(
    exploding_explain: None, tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    res = runner.invoke(app, [*args, "explain", "r1", "--artifact-root", str(tmp_path)], env=env)
    assert isinstance(res.exception, RuntimeError) and "error:" not in res.output


def test_version_comes_from_the_installed_package() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"checkout-recs {version('checkout-recs')}"


# ------------------------------------------------------------------------------------------ drift


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reference table, a table like it, and one whose prices moved (drift in ``price``)."""
    root = tmp_path_factory.mktemp("traffic")
    paths = {
        "reference": root / "ref.parquet",
        "quiet": root / "quiet.parquet",
        "drifted": root / "drifted.parquet",
    }
    traffic_frame(600, seed=1).to_parquet(paths["reference"])
    traffic_frame(600, seed=2).to_parquet(paths["quiet"])
    traffic_frame(600, seed=2, price_scale=3.0).to_parquet(paths["drifted"])
    return paths


@pytest.mark.parametrize(
    ("current", "flag", "code"),
    [("drifted", [], 0), ("drifted", ["--fail-on-drift"], 1), ("quiet", ["--fail-on-drift"], 0)],
)
def test_drift_fails_only_when_asked_and_drifted(
    traffic: dict[str, Path], tmp_path: Path, current: str, flag: list[str], code: int
) -> None:
    res = runner.invoke(
        app,
        [
            "drift",
            "--reference",
            str(traffic["reference"]),
            "--current",
            str(traffic[current]),
            "--out",
            str(tmp_path / "out"),
            "--columns",
            "price",
            *flag,
        ],
    )
    assert res.exit_code == code, res.output
    summary = json.loads((tmp_path / "out" / "drift_summary.json").read_text())
    assert summary["drift_detected"] is (current == "drifted")  # the report is written either way


# ------------------------------------------------------------------------------ option names


@dataclass(frozen=True)
class Concept:
    """One concept's option name and environment variable, and how to recognise other names for it."""

    option: str
    envvar: str | None
    name_pattern: str | None = None  # a regex on option names
    help_pattern: str | None = None  # a regex on the start of an option's help


CONCEPTS: dict[str, Concept] = {
    "MLflow tracking URI": Concept(
        "--tracking-uri", "MLFLOW_TRACKING_URI", r"tracking|mlflow-uri|^--mlflow$"
    ),
    "artifact store root": Concept(
        "--artifact-root",
        "CHECKOUT_RECS_ARTIFACT_ROOT",
        r"artifact|store|publish",
        r"^artifact.store root",
    ),
    "Redis URL": Concept("--redis-url", "CHECKOUT_RECS_REDIS_URL", r"redis"),
    "S3 endpoint": Concept("--s3-endpoint-url", "AWS_ENDPOINT_URL_S3", r"endpoint|s3-url"),
    "Feast environment": Concept(
        "--feature-env", "CHECKOUT_RECS_FEATURE_ENV", r"^--env$|feature-env|feast-env"
    ),
    "Feast work folder": Concept("--feast-work-dir", None, r"^--work-dir$|feast-work|feast-dir"),
    "MLflow run id": Concept("--run-id", None, r"run-id"),
    "serving bundle": Concept("--bundle", None, r"^--bundle$", r"^(challenger )?serving bundle"),
}

#: (command, option) pairs that look like a concept but are not under this convention, and why.
EXEMPT: dict[tuple[str, str], str] = {
    ("serve", "--decision-log"): "serve's options mirror the transformer's settings one for one "
    "(--decision_log, CHECKOUT_RECS_DECISION_LOG, read by the transformer itself)",
}


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:  # noqa: ANN401 - click objects
    """(command path, command) of every leaf command of the app."""
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield " ".join(path), cmd
        return
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


def _options() -> list[tuple[str, Any]]:
    """(command path, option) of every option of every command (not --help)."""
    root = typer.main.get_command(app)
    return [
        (name, p)
        for name, cmd in _commands(root)
        for p in cmd.params
        if getattr(p, "param_type_name", "") == "option" and "--help" not in p.opts
    ]


def _concepts_of(opt: Any) -> list[str]:  # noqa: ANN401 - a click option
    names, helptext = [o for o in opt.opts if o.startswith("--")], (opt.help or "").lower()
    return [
        c
        for c, spec in CONCEPTS.items()
        if (spec.name_pattern and any(re.search(spec.name_pattern, n) for n in names))
        or (spec.help_pattern and re.search(spec.help_pattern, helptext))
    ]


def test_the_walk_sees_every_command() -> None:
    commands = {name for name, _ in _options()}
    assert {
        "train",
        "register",
        "drift",
        "deploy canary",
        "features materialize",
        "inventory consume",
    } <= commands


def test_one_option_name_per_concept_with_its_environment_variable() -> None:
    problems = []
    for command, opt in _options():
        for concept in _concepts_of(opt):
            spec = CONCEPTS[concept]
            name = next(o for o in opt.opts if o.startswith("--"))
            if (command, name) in EXEMPT:
                continue
            if opt.opts[0] != spec.option:
                problems.append(f"{command} {'/'.join(opt.opts)}: the {concept} is {spec.option}")
            elif spec.envvar and opt.envvar != spec.envvar:
                problems.append(f"{command} {spec.option}: reads {opt.envvar}, not {spec.envvar}")
    assert not problems, "\n".join(problems)


def test_every_concept_is_in_use_and_the_exemptions_still_exist() -> None:
    options = {(command, o) for command, opt in _options() for o in opt.opts}
    used = {o for _, o in options}
    assert {spec.option for spec in CONCEPTS.values()} <= used
    assert set(EXEMPT) <= options


def _checks_existence(param: Any) -> bool:  # noqa: ANN401 - a click parameter
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    return bool(getattr(info, "exists", False))


def test_no_path_parameter_checks_existence_at_parse_time() -> None:
    """A path that names nothing is a runtime failure (1), never click's usage error (2)."""
    root = typer.main.get_command(app)
    params = [(name, p) for name, cmd in _commands(root) for p in cmd.params]
    assert len(params) > 200
    assert not [f"{command} {p.name}" for command, p in params if _checks_existence(p)]


# ------------------------------------------------------------------------- environment variables


@pytest.mark.slow
def test_register_reads_mlflow_tracking_uri(
    mlflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    from checkout_recs.tracking import alias_version

    monkeypatch.chdir(tmp_path)  # the default URI would be sqlite:///artifacts/mlflow.db under here
    run_id = logged_run(mlflow_db, {"ndcg@6": 0.12}, tmp_path / "run")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"overall": {"ndcg@6": 0.12}}))
    res = runner.invoke(
        app,
        ["register", "--metrics", str(metrics), "--run-id", run_id],
        env={"MLFLOW_TRACKING_URI": mlflow_db},
    )
    assert res.exit_code == 0, res.output
    assert alias_version(mlflow_db, "challenger") == ("1", run_id)
    assert not (tmp_path / "artifacts").exists()


def test_explain_reads_the_artifact_root_from_the_environment(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["explain", "nope"], env={"CHECKOUT_RECS_ARTIFACT_ROOT": str(tmp_path / "root")}
    )
    assert res.exit_code == 1 and str(tmp_path / "root") in res.output


# ---------------------------------------------------------------------------------- progress


def test_progress_off_a_terminal_is_plain_lines_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress("train") as shown:
        shown.stage("ranker")
        for i in range(1, 21):
            shown.count(i, 20, "rows")
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert (
        out == ""
        and lines[0].startswith("train: ranker … [")
        and lines[-1].startswith("train: done in ")
    )
    assert sum(" rows [" in line for line in lines) == 11  # one per tenth, 0/10 … 10/10
