"""The Grafana dashboards: valid JSON, an overview plus one per service, every panel a
Prometheus query on the chosen namespace, latency panels with exemplars and trace links.
(That every metric they query is really exported: tests/integration/test_dashboard_metrics.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "rapport" / "dashboards"
EXPECTED = {"overview", "ingest", "profile", "recommend", "respond"}


def load() -> dict[str, dict[str, Any]]:
    return {
        p.stem.removeprefix("rapport-"): json.loads(p.read_text())
        for p in DASHBOARDS.glob("*.json")
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_an_overview_and_one_dashboard_per_service() -> None:
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
    )
    for topic in topics:
        assert topic in titles, topic
