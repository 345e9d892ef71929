"""Every metric the Grafana dashboards and the alert rules query is one that a running
service really exports: the five services and Triton run as real processes (as
`rapport-dev up` starts them, knowledge and memory on Milvus) and their live /metrics
are scraped."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rapport.common.kafka import TopicSpec, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.devstack.servers import RunningServer
from rapport.devstack.stack import Mesh, MeshPlan, Stack, start_services

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "rapport"
# Names our queries may use: the services' own, Triton's, and the rules' recordings.
METRIC = re.compile(r"\b(?:rapport_|rapport:|nv_)[a-zA-Z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def metric_names(expr: str) -> set[str]:
    return set(METRIC.findall(STRING.sub('""', expr)))


def dashboard_queries() -> dict[str, str]:
    """Where -> PromQL, for every panel target and templating query of every dashboard."""
    found = {}
    for path in sorted((CHART / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found[f"{path.name}: {panel['title']} ({target['refId']})"] = target["expr"]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                found[f"{path.name}: variable {variable['name']}"] = variable["definition"]
    return found


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule of the committed all-enabled render (kept equal to a fresh one)."""
    documents = yaml.safe_load_all((CHART / "examples" / "all-enabled.yaml").read_text())
    (rule,) = [d for d in documents if d and d["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def exported_names(text: str) -> set[str]:
    """Every series name a /metrics page can hold, from its `# TYPE` lines (a family is
    declared there even before its first sample)."""
    names = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(maxsplit=3)
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {f"{name}_sum", f"{name}_count"}
    return names


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URL
        body: bytes = response.read()
    return body.decode()


@pytest.fixture(scope="module")
def infra(
    kafka_server: RunningServer,
    mongo_server: RunningServer,
    redis_server: RunningServer,
    milvus_server: RunningServer,
    models_triton: RunningServer,
) -> dict[str, str]:
    return {
        "kafka": kafka_server.url("kafka"),
        "mongo": mongo_server.url("mongo"),
        "redis": redis_server.url("redis"),
        "milvus": milvus_server.url(),
        "triton_grpc": models_triton.url("triton_grpc"),
        "triton_http": models_triton.url("triton_http"),
    }


@pytest.fixture(scope="module")
def mesh(
    infra: dict[str, str], models_triton: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The five services as processes, on topics, a group, a database and collections of
    their own; knowledge needs the exported encoder, hence the trained models' Triton.
    Yields name -> /metrics URL, Triton's included."""
    suffix = uuid.uuid4().hex[:8]
    names = ("events", "changes", "dlq", "knowledge", "knowledge-dlq")
    topics = {name: f"t.dash-{name}.{suffix}" for name in names}
    kafka = KafkaSettings(kafka_bootstrap_servers=infra["kafka"])
    asyncio.run(ensure_topics(kafka, [TopicSpec(t, 1) for t in topics.values()]))
    plan = MeshPlan(
        api_keys={},
        services=("profile", "recommend", "knowledge", "ingest", "respond"),
        service_env={
            "RAPPORT_MONGO_DATABASE": f"dash_{suffix}",
            "RAPPORT_INGEST_TOPIC": topics["events"],
            "RAPPORT_INGEST_KNOWLEDGE_TOPIC": topics["knowledge"],
            "RAPPORT_PROFILE_GROUP_ID": f"g.dash.{suffix}",
            "RAPPORT_PROFILE_EVENTS_TOPIC": topics["events"],
            "RAPPORT_PROFILE_CHANGES_TOPIC": topics["changes"],
            "RAPPORT_PROFILE_DLQ_TOPIC": topics["dlq"],
            "RAPPORT_PROFILE_MEMORY_COLLECTION": f"dash_memory_{suffix}",
            "RAPPORT_KNOWLEDGE_GROUP_ID": f"g.dash-knowledge.{suffix}",
            "RAPPORT_KNOWLEDGE_TOPIC": topics["knowledge"],
            "RAPPORT_KNOWLEDGE_DLQ_TOPIC": topics["knowledge-dlq"],
            "RAPPORT_KNOWLEDGE_COLLECTION": f"dash_knowledge_{suffix}",
            "RAPPORT_RESPOND_KNOWLEDGE_COLLECTION": f"dash_knowledge_{suffix}",
            "RAPPORT_RESPOND_EVENTS_TOPIC": topics["events"],
            "OTEL_SDK_DISABLED": "true",
        },
    )
    with Stack(tmp_path_factory.mktemp("dashboard-mesh")) as stack:
        mesh = start_services(plan, stack, Mesh(infra=infra))
        urls = {name: f"{url}/metrics" for name, url in mesh.services.items()}
        yield {"triton": models_triton.url("triton_metrics"), **urls}


def test_every_metric_a_dashboard_or_rule_queries_is_exported_by_a_running_service(
    mesh: dict[str, str],
) -> None:
    exported: dict[str, set[str]] = {
        name: exported_names(scrape(url)) for name, url in mesh.items()
    }
    available = set().union(*exported.values())
    groups = rule_groups()
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}

    queries = dashboard_queries()
    for group in groups:
        for i, rule in enumerate(group["rules"]):
            name = rule.get("alert") or rule["record"]
            queries[f"{group['name']} rule {i}: {name}"] = rule["expr"]
    missing: dict[str, set[str]] = {}
    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where} queries no Rapport or Triton metric: {expr}"
        unknown = {n for n in names if n not in available and n not in recorded}
        if unknown:
            missing[where] = unknown
    assert not missing, "queried but exported by no running service:\n" + "\n".join(
        f"  {where}: {sorted(names)}" for where, names in sorted(missing.items())
    )
    # Each service's own metrics are in use somewhere, not only the shared HTTP ones.
    used = set().union(*(metric_names(e) for e in queries.values()))
    assert set(mesh) == {"triton", "ingest", "profile", "recommend", "respond", "knowledge"}
    for service in ("ingest", "profile", "recommend", "respond", "knowledge"):
        assert any(n.startswith(f"rapport_{service}_") for n in used), service
    assert any(n.startswith("nv_inference_") for n in used)
