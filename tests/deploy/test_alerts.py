"""The chart's alerts with promtool (Debian's prometheus package): the rendered rules pass
`promtool check rules` (expressions and annotation templates), and every alert fires on the
series that should fire it and stays quiet otherwise (tests/deploy/alerts_test.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_chart import CHART, render

ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run deploy/setup.sh --test")
    return path


def rendered_rules() -> dict[str, Any]:
    objects = render(None, "metrics.prometheusRule.enabled=true")
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def alert_names() -> set[str]:
    return {r["alert"] for g in rendered_rules()["groups"] for r in g["rules"]}


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rendered_rules()))
    out = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in out.stdout


def test_every_alert_fires_when_it_should_and_only_then(tmp_path: Path) -> None:
    spec = rendered_rules()
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # checked by promtool check rules above
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert tested == alert_names(), "every alert has a test, and every test an alert"
    tests["rule_files"] = [str(rules)]
    suite = tmp_path / "alerts_test.yaml"
    suite.write_text(yaml.safe_dump(tests))
    out = subprocess.run(
        [promtool(), "test", "rules", str(suite)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_thresholds_come_from_the_values() -> None:
    objects = render(
        None,
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.iteratorAgeMilliseconds=1234",
    )
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    [age] = [r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "EsmIteratorAgeHigh"]
    assert age["expr"].endswith("> 1234")
    assert CHART.exists()
