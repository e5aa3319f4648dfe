"""``promtool check rules`` and ``promtool test rules`` on the alert and recording rules, rendered
as the cluster gets them; every alert has a firing and a quiet case with recorded series.

promtool is required (``scripts/ensure_services.sh`` installs Debian's ``prometheus``, which
ships it): the test fails, not skips, where it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from checkout_recs.deploy.alerts import RULE_SOURCES, load_groups
from tests.fixtures_prometheus import REPO, rendered_rule_files, require_binary

TESTS = REPO / "monitoring" / "alerts" / "prometheus-rules.test.yaml"


def _promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_binary("promtool"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rules(kind: str) -> list[dict]:
    return [
        r
        for src in RULE_SOURCES
        for g in load_groups(REPO / src.source)
        for r in g["rules"]
        if kind in r
    ]


def test_promtool_check_rules_accepts_every_rule_file(tmp_path: Path) -> None:
    files = rendered_rule_files(tmp_path)
    res = _promtool("check", "rules", *files, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(RULE_SOURCES)


def test_promtool_unit_tests_pass_on_the_rendered_rules(tmp_path: Path) -> None:
    rendered_rule_files(tmp_path)
    shutil.copyfile(TESTS, tmp_path / TESTS.name)
    res = _promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_the_unit_tests_read_every_rule_file() -> None:
    listed = yaml.safe_load(TESTS.read_text())["rule_files"]
    assert sorted(listed) == sorted(src.source.name for src in RULE_SOURCES)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [
        c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])
    ]
    for alert in (r["alert"] for r in _rules("alert")):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c.get("exp_alerts") for c in mine), f"{alert}: no test where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{alert}: no test where it stays quiet"
        fired = [a for c in mine for a in c.get("exp_alerts") or []]
        assert all(a["exp_annotations"]["runbook_url"].startswith("https://") for a in fired), alert


def test_every_recording_rule_is_checked_by_an_expression_test() -> None:
    exprs = " ".join(
        e["expr"]
        for t in yaml.safe_load(TESTS.read_text())["tests"]
        for e in t.get("promql_expr_test", [])
    )
    missing = [r["record"] for r in _rules("record") if r["record"] not in exprs]
    assert not missing, missing
