"""The chart's PrometheusRule: `promtool check rules` accepts it, `promtool test rules`
(tests/deploy/alerts.test.yaml) shows every alert firing when its SLO burns and silent
when healthy, and every alert carries a summary and a runbook that exists."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.deploy.conftest import DeployTools

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).with_name("alerts.test.yaml")
RUNBOOKS = REPO / "docs" / "runbooks"
SLO_ALERTS = {
    "RapportRespondAvailabilityBudgetBurn",
    "RapportRespondLatencyBudgetBurn",
    "RapportProfileFreshnessBudgetBurn",
    "RapportKnowledgeFreshnessBudgetBurn",
}
# Rendered only with the knowledge component, and with profile's memory in a vector store.
KNOWLEDGE_ALERTS = {
    "RapportKnowledgeFreshnessBudgetBurn",
    "RapportKnowledgeIndexerLagHigh",
    "RapportKnowledgeIndexerStalled",
}
MEMORY_ALERTS = {"RapportProfileMemoryWaiting", "RapportProfileRecallFailing"}


def rule_groups(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    (rule,) = [m for m in rendered["prod"] if m["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = copy.deepcopy(rule["spec"]["groups"])
    return groups


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for g in groups for r in g["rules"] if "alert" in r]


def promtool_run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool with fixed arguments
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rendered_rules(
    rendered: dict[str, list[dict[str, Any]]], promtool: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(rendered)}))
    result = promtool_run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_every_alert(
    rendered: dict[str, list[dict[str, Any]]], promtool: str, tmp_path: Path
) -> None:
    groups = rule_groups(rendered)
    for rule in (r for g in groups for r in g["rules"]):
        rule.pop("annotations", None)  # compared by the tests below, not by promtool
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = promtool_run(promtool, "test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_cases_that_fire_and_cases_that_stay_silent(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    names = {a["alert"] for a in alerts(rule_groups(rendered))}
    assert names >= SLO_ALERTS
    fires: dict[str, set[str]] = {name: set() for name in names}
    silent: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            expected = check["exp_alerts"]
            if expected:
                fires[check["alertname"]].update(e["exp_labels"]["severity"] for e in expected)
            else:
                silent.add(check["alertname"])
    assert {n for n, severities in fires.items() if not severities} == set()
    assert names <= silent, f"no healthy case for {names - silent}"
    for name in SLO_ALERTS:  # both the page and the ticket are shown to fire
        assert fires[name] == {"critical", "warning"}, name


def test_every_alert_has_a_summary_and_a_runbook_that_exists(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    found = set()
    for alert in alerts(rule_groups(rendered)):
        name = alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        assert annotations["runbook_url"].endswith(f"/{name}.md"), annotations["runbook_url"]
        assert alert["labels"]["severity"] in ("critical", "warning")
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"{runbook} is missing"
        assert runbook.read_text().startswith(f"# {name}\n")
        found.add(runbook.name)
    runbooks = {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md"}
    assert runbooks == found, "a runbook without an alert"
    index = (RUNBOOKS / "README.md").read_text()
    assert all(re.search(rf"\[{n.removesuffix('.md')}\]", index) for n in found)


def test_knowledge_and_memory_alerts_follow_their_components(
    rendered: dict[str, list[dict[str, Any]]], deploy: DeployTools, tmp_path: Path
) -> None:
    assert {a["alert"] for a in alerts(rule_groups(rendered))} >= KNOWLEDGE_ALERTS | MEMORY_ALERTS
    values = {
        "monitoring": {"rules": {"enabled": True}},
        "components": {
            "knowledge": {"enabled": False},
            "respond": {"calls": ["profile", "recommend"]},
            "profile": {"memory": {"vectorStore": False}},
        },
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    result = deploy.chart("render-json", str(tmp_path / "values.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    (rule,) = [m for m in json.loads(result.stdout) if m["kind"] == "PrometheusRule"]
    groups = rule["spec"]["groups"]
    names = {a["alert"] for a in alerts(groups)}
    assert names >= SLO_ALERTS - KNOWLEDGE_ALERTS
    assert not names & (KNOWLEDGE_ALERTS | MEMORY_ALERTS)
    assert "knowledge" not in yaml.safe_dump(groups)
