"""The Grafana dashboards: valid JSON, an overview, one per service and one for experiments,
every panel a Prometheus query on the chosen namespace, latency panels with exemplars and trace
links, and every metric an alert watches on a panel. (That every metric they query is really
exported: tests/integration/test_dashboard_metrics.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "rapport" / "dashboards"
EXPECTED = {"overview", "ingest", "profile", "recommend", "respond", "knowledge", "experiments"}
METRIC = re.compile(r"\b(?:rapport_|nv_)[a-zA-Z0-9_]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def load() -> dict[str, dict[str, Any]]:
    return {
        p.stem.removeprefix("rapport-"): json.loads(p.read_text())
        for p in DASHBOARDS.glob("*.json")
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_an_overview_one_dashboard_per_service_and_experiments() -> None:
    dashboards = load()
    assert set(dashboards) == EXPECTED
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == f"rapport-{name}"
        assert "rapport" in dashboard["tags"]


def test_every_panel_queries_prometheus_in_the_chosen_namespace() -> None:
    for name, dashboard in load().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["traces_uid"]["type"] == "textbox"
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in panels(dashboard):
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert 'namespace="$namespace"' in target["expr"], (name, panel["title"])


def test_latency_panels_show_exemplars_and_link_to_traces() -> None:
    for name, dashboard in load().items():
        linked = [p for p in panels(dashboard) if p.get("links")]
        assert linked, f"{name}: no panel links to traces"
        for panel in linked:
            for link in panel["links"]:
                assert "${traces_uid}" in link["url"]
        exemplars = [p for p in panels(dashboard) if any(t.get("exemplar") for t in p["targets"])]
        assert exemplars, f"{name}: no panel shows exemplars"
        for panel in exemplars:
            assert all("_bucket" in t["expr"] for t in panel["targets"])


def test_the_overview_shows_slos_burn_traffic_errors_freshness_and_lag() -> None:
    titles = " / ".join(p["title"] for p in panels(load()["overview"])).lower()
    topics = (
        "availability",
        "latency",
        "burn",
        "requests per second",
        "errors",
        "freshness",
        "lag",
        "knowledge",
        "memory",
    )
    for topic in topics:
        assert topic in titles, topic


def queried(dashboard: dict[str, Any]) -> set[str]:
    exprs = (t["expr"] for p in panels(dashboard) for t in p["targets"])
    return {name for expr in exprs for name in METRIC.findall(STRING.sub('""', expr))}


def test_every_metric_an_alert_watches_is_on_a_dashboard(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """An alert's runbook sends the reader to a dashboard: what fired must be on one."""
    (rule,) = [m for m in rendered["all-enabled"] if m["kind"] == "PrometheusRule"]
    on_dashboards = set().union(*(queried(d) for d in load().values()))
    for group in rule["spec"]["groups"]:
        for alert in (r for r in group["rules"] if "alert" in r):
            watched = set(METRIC.findall(STRING.sub('""', alert["expr"])))
            assert watched <= on_dashboards, (alert["alert"], watched - on_dashboards)


def test_knowledge_and_memory_show_indexing_freshness_lag_search_and_waiting() -> None:
    dashboards = load()
    knowledge = queried(dashboards["knowledge"])
    for metric in (
        "rapport_knowledge_records_total",
        "rapport_knowledge_chunks_total",
        "rapport_knowledge_freshness_seconds_bucket",
        "rapport_knowledge_consumer_lag",
        "rapport_knowledge_search_duration_seconds_bucket",
        "rapport_knowledge_store_duration_seconds_bucket",
    ):
        assert metric in knowledge, metric
    row, in_memory_row = "", []
    for panel in dashboards["profile"]["panels"]:
        row = panel["title"] if panel["type"] == "row" else row
        if row == "Memory" and panel["type"] != "row":
            in_memory_row.append(panel)
    memory = queried({"panels": in_memory_row})
    for metric in (
        "rapport_profile_memory_waiting",
        "rapport_profile_recall_failures_total",
        "rapport_profile_recall_duration_seconds_count",
        "rapport_respond_degraded_total",
    ):
        assert metric in memory, metric


def test_experiments_have_a_row_each_with_their_figures_by_variant() -> None:
    dashboard = load()["experiments"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    experiment = variables["experiment"]
    assert experiment["definition"] == (
        'label_values(rapport_experiment_users{namespace="$namespace"}, experiment)'
    )
    assert experiment["query"]["query"] == experiment["definition"]
    assert experiment["multi"] is True
    assert experiment["includeAll"] is True
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    repeated = [r for r in rows if r.get("repeat") == "experiment"]
    # An open row repeats with the panels below it, up to the next row: it comes last.
    assert repeated == [rows[-1]]
    start = dashboard["panels"].index(rows[-1])
    in_row = dashboard["panels"][start + 1 :]
    assert in_row
    for panel in in_row:
        for target in panel["targets"]:
            assert 'experiment=~"$experiment"' in target["expr"], panel["title"]
    per_experiment = queried({"panels": in_row})
    for metric in (
        "rapport_experiment_users",
        "rapport_experiment_conversion_rate",
        "rapport_experiment_probability_to_beat_control",
        "rapport_experiment_srm_p_value",
        "rapport_experiment_exposures_total",
        "rapport_experiment_conversions_total",
        "rapport_respond_experiment_assignments_total",
        "rapport_respond_experiment_exposures_total",
    ):
        assert metric in per_experiment, metric
    assert "rapport_experiment_exposures_rejected_total" in queried(dashboard)
