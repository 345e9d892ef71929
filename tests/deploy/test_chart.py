"""charts/rapport: rendered by the real Helm for four value sets, linted, validated against
the Kubernetes schemas, committed as examples, and holding the promises of DESIGN.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import pytest
import yaml
from prometheus_client.utils import floatToGoString

from rapport.common.experiments import MAX_EXPERIMENTS, NAME_PATTERN, Kpi, parse_experiments
from rapport.common.kafka import EVENTS_TOPIC, KNOWLEDGE_TOPIC
from rapport.common.metrics import LATENCY_BUCKETS_S
from rapport.common.settings import env_vars
from rapport.knowledge.settings import KnowledgeSettings
from rapport.profile.settings import ProfileSettings
from tests.service_settings import SERVICE_SETTINGS

if TYPE_CHECKING:
    from tests.deploy.conftest import DeployTools

pytestmark = pytest.mark.unit

CHART = Path(__file__).resolve().parents[2] / "charts" / "rapport"
Manifest = dict[str, Any]

VALUE_SETS = ("default", "dev", "prod", "all-enabled")
COMPONENTS = ("ingest", "profile", "recommend", "respond", "knowledge", "triton")
# Who calls whom (DESIGN.md "Shape"): the only pod-to-pod edges the NetworkPolicies allow.
EDGES = {
    ("respond", "profile"),
    ("respond", "recommend"),
    ("respond", "knowledge"),
    ("recommend", "profile"),
    ("recommend", "triton"),
    ("knowledge", "triton"),
}
SECRETS = (
    "RAPPORT_MONGO_URL",
    "RAPPORT_REDIS_URL",
    "RAPPORT_KAFKA_SASL_PASSWORD",
    "RAPPORT_KNOWLEDGE_MILVUS_TOKEN",
    "RAPPORT_PROFILE_MILVUS_TOKEN",
)


def objects(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    """Objects of a kind by component (`app.kubernetes.io/component`), or by name."""
    found = {}
    for m in manifests:
        if m["kind"] == kind:
            labels = m["metadata"].get("labels", {})
            found[labels.get("app.kubernetes.io/component", m["metadata"]["name"])] = m
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def main_container(deployment: Manifest) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# ---- the tools ----------------------------------------------------------------------


def test_helm_lint_is_clean_for_every_value_set(deploy: DeployTools) -> None:
    result = deploy.chart("lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s)" in result.stdout


def test_every_manifest_passes_kubernetes_validate_strict(deploy: DeployTools) -> None:
    result = deploy.chart("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout, result.stdout


def test_committed_examples_equal_a_fresh_render(deploy: DeployTools) -> None:
    result = deploy.chart("examples", "--check")
    assert result.returncode == 0, (
        "charts/rapport/examples/ differ from a fresh render; review the diff and run "
        f"`make chart-examples`:\n{result.stdout}{result.stderr}"
    )


def test_values_table_in_install_doc_is_generated_from_the_schema(deploy: DeployTools) -> None:
    result = deploy.chart("values-doc", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


# What the schema asks of an experiment (the services check the rest, and the dates, at start).
VARIANTS = [{"name": "control", "weight": 1}, {"name": "empathetic", "weight": 1}]
EXPERIMENT = {
    "name": "tone-test",
    "variants": VARIANTS,
    "start": "",
    "stop": "",
    "primary_kpi": "click",
}
BAD_VALUES = {
    "component-typo": {"components": {"recomend": {"replicas": 1}}},
    "unknown-key": {"default": {"replicaCount": 3}},
    "unknown-top-level": {"ingress": {"enabled": True}},
    "bad-enum": {"kafka": {"securityProtocol": "TLS"}},
    "root-user": {"default": {"runAsUser": 0}},
    "not-a-bucket-bound": {"monitoring": {"rules": {"slo": {"respondLatencyThreshold": "0.2"}}}},
    "bad-digest": {"components": {"triton": {"image": {"digest": "latest"}}}},
    "unknown-dependency": {"components": {"ingest": {"uses": ["postgres"]}}},
    "bad-consistency": {"milvus": {"searchConsistency": "strong"}},
    "milvus-not-a-url": {"milvus": {"uri": "milvus.milvus.svc:19530"}},
    "memory-typo": {"components": {"profile": {"memory": {"retention": 30}}}},
    "memory-bad-collection": {"components": {"profile": {"memory": {"collection": "my-memory"}}}},
    "experiment-without-kpi": {
        "experiments": [{k: v for k, v in EXPERIMENT.items() if k != "primary_kpi"}]
    },
    "experiment-bad-name": {"experiments": [{**EXPERIMENT, "name": "Tone test"}]},
    "experiment-one-variant": {"experiments": [{**EXPERIMENT, "variants": VARIANTS[:1]}]},
    "experiments-not-a-list": {"experiments": {"tone-test": EXPERIMENT}},
}


def test_schema_accepts_the_shipped_values_and_rejects_mistakes(
    deploy: DeployTools, tmp_path: Path
) -> None:
    files = [str(CHART / name) for name in ("values-dev.yaml", "values-prod.yaml")]
    files.append(str(CHART / "ci" / "all-enabled-values.yaml"))
    for name, values in BAD_VALUES.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(values))
        files.append(str(path))
    result = deploy.chart("check-values", *files)
    failed = {
        Path(line[5:]).stem for line in result.stdout.splitlines() if line.startswith("FAIL ")
    }
    assert failed == set(BAD_VALUES), result.stdout + result.stderr


def test_latency_thresholds_offered_are_the_histograms_bucket_bounds() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    slo = schema["properties"]["monitoring"]["properties"]["rules"]["properties"]["slo"]
    # As prometheus_client writes the `le` label (untyped, hence the ignore).
    bounds = [floatToGoString(b) for b in LATENCY_BUCKETS_S]  # type: ignore[no-untyped-call]
    assert slo["properties"]["respondLatencyThreshold"]["enum"] == bounds
    assert slo["properties"]["freshnessThreshold"]["enum"] == bounds
    assert slo["properties"]["knowledgeFreshnessThreshold"]["enum"] == bounds


# ---- what every component gets ------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_component_has_its_objects(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    manifests = rendered[value_set]
    keda = set(objects(manifests, "ScaledObject"))
    for kind in ("Deployment", "Service", "ServiceAccount", "NetworkPolicy"):
        assert set(COMPONENTS) <= set(objects(manifests, kind)), kind
    if value_set == "dev":  # one replica, no autoscaling, no disruption budget
        assert not objects(manifests, "HorizontalPodAutoscaler")
        assert not objects(manifests, "PodDisruptionBudget")
        for deployment in objects(manifests, "Deployment").values():
            assert deployment["spec"]["replicas"] == 1
        return
    assert set(objects(manifests, "PodDisruptionBudget")) == set(COMPONENTS)
    assert set(objects(manifests, "HorizontalPodAutoscaler")) == set(COMPONENTS) - keda
    for hpa in objects(manifests, "HorizontalPodAutoscaler").values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for deployment in objects(manifests, "Deployment").values():
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_run_with_a_restricted_security_context(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    for name, deployment in objects(rendered[value_set], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, (name, container["name"])
            assert sc["runAsUser"] > 10000
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            for resource in ("cpu", "memory"):
                assert resource in container["resources"]["requests"], (name, resource)
                assert resource in container["resources"]["limits"], (name, resource)
    for account in objects(rendered[value_set], "ServiceAccount").values():
        assert account["automountServiceAccountToken"] is False


def test_probes_and_telemetry_come_from_each_component(
    rendered: dict[str, list[Manifest]],
) -> None:
    for name, deployment in objects(rendered["default"], "Deployment").items():
        container = main_container(deployment)
        env = env_of(container)
        assert env["OTEL_SERVICE_NAME"] == f"rapport-{name}"
        assert "k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
        live = container["livenessProbe"]["httpGet"]
        ready = container["readinessProbe"]["httpGet"]
        if name == "triton":
            assert (live["path"], ready["path"]) == ("/v2/health/live", "/v2/health/ready")
            assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
        else:
            assert (live["path"], ready["path"]) == ("/livez", "/readyz")
            assert env[f"RAPPORT_{name.upper()}_HOST"] == "0.0.0.0"
            assert "startupProbe" not in container
    prod = objects(rendered["prod"], "Deployment")
    assert env_of(main_container(prod["respond"]))["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith(
        "http://"
    )


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rapport_variable_the_chart_sets_is_one_the_service_reads(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    deployments = objects(rendered[value_set], "Deployment")
    for service, settings_cls in SERVICE_SETTINGS.items():
        read = set(env_vars(settings_cls))
        container = main_container(deployments[service])
        port = env_of(container)[f"RAPPORT_{service.upper()}_PORT"]
        assert [p["containerPort"] for p in container["ports"]] == [int(port)]
        assert int(port) == settings_cls.model_fields["port"].default
        unknown = {n for n in env_of(container) if n.startswith("RAPPORT_")} - read
        assert not unknown, f"{service} sets variables its settings never read: {unknown}"


def test_secrets_stay_out_of_plain_env(rendered: dict[str, list[Manifest]]) -> None:
    for value_set in ("default", "prod"):
        for name, deployment in objects(rendered[value_set], "Deployment").items():
            env = env_of(main_container(deployment))
            for secret in SECRETS:
                if secret in env:
                    assert "secretKeyRef" in env[secret], (value_set, name, secret)
            assert "RAPPORT_API_KEYS" not in env, "keys come from a mounted Secret file"
    prod = objects(rendered["prod"], "Deployment")
    profile_env = env_of(main_container(prod["profile"]))
    assert profile_env["RAPPORT_MONGO_URL"]["secretKeyRef"]["name"] == "rapport-mongo"
    knowledge_env = env_of(main_container(prod["knowledge"]))
    assert knowledge_env["RAPPORT_KNOWLEDGE_MILVUS_TOKEN"]["secretKeyRef"] == {
        "name": "rapport-milvus",
        "key": "milvus-token",
    }
    assert profile_env["RAPPORT_PROFILE_MILVUS_TOKEN"]["secretKeyRef"] == {
        "name": "rapport-milvus",
        "key": "milvus-token",
    }
    default = objects(rendered["default"], "Deployment")
    assert "RAPPORT_KNOWLEDGE_MILVUS_TOKEN" not in env_of(main_container(default["knowledge"]))
    assert "RAPPORT_PROFILE_MILVUS_TOKEN" not in env_of(main_container(default["profile"]))
    assert not objects(rendered["prod"], "Secret"), "prod takes every credential from its own"


# ---- network -------------------------------------------------------------------------


def _component_of(peer: dict[str, Any]) -> str | None:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    component: str | None = labels.get("app.kubernetes.io/component")
    return component


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_network_policies_deny_by_default_and_allow_the_designed_edges(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    policies = objects(rendered[value_set], "NetworkPolicy")
    deny = policies.pop("rapport-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    assert deny["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "rapport",
        "app.kubernetes.io/instance": "rapport",
    }
    ingress_edges, egress_edges = set(), set()
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == name
        for rule in spec["ingress"]:
            for peer in rule.get("from", []):
                if caller := _component_of(peer):
                    ingress_edges.add((caller, name))
        dns = spec["egress"][0]
        assert {p["port"] for p in dns["ports"]} == {53}
        assert {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}
        for rule in spec["egress"][1:]:
            for peer in rule.get("to", []):
                if callee := _component_of(peer):
                    egress_edges.add((name, callee))
    assert ingress_edges == EDGES
    assert egress_edges == EDGES
    triton = policies["triton"]["spec"]
    assert len(triton["egress"]) == 1 or value_set in ("prod", "all-enabled"), "DNS (+ tracing)"


# ---- optional parts -------------------------------------------------------------------


def test_keda_scales_profile_on_consumer_lag_instead_of_the_hpa(
    rendered: dict[str, list[Manifest]],
) -> None:
    prod = rendered["prod"]
    scaled = objects(prod, "ScaledObject")
    assert set(scaled) == {"profile"}
    spec = scaled["profile"]["spec"]
    deployment = objects(prod, "Deployment")["profile"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == EVENTS_TOPIC
    assert trigger["metadata"]["consumerGroup"] == ProfileSettings.model_fields["group_id"].default
    assert trigger["authenticationRef"] == {"name": "rapport-kafka"}, "SASL brokers need one"
    assert "profile" not in objects(prod, "HorizontalPodAutoscaler")


def test_triton_gets_its_model_repository_from_an_image_or_a_pvc(
    rendered: dict[str, list[Manifest]],
) -> None:
    pod = objects(rendered["default"], "Deployment")["triton"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"].startswith("rapport-models:")
    assert init["command"][-2:] == ["/models/repository/.", "/model-repository/"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = mounts["/dev/shm"]  # noqa: S108 - the Python backend's shared memory, a tmpfs
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
    args = container["args"]
    assert "--model-repository=/models" in args
    assert "--grpc-port=8001" in args

    pod = objects(rendered["all-enabled"], "Deployment")["triton"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-repository"]["persistentVolumeClaim"] == {
        "claimName": "rapport-models",
        "readOnly": True,
    }
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    mount = next(m for m in container["volumeMounts"] if m["name"] == "model-repository")
    assert mount["subPath"] == "repository"


def test_recommend_finds_triton_profile_and_its_catalogue(
    rendered: dict[str, list[Manifest]],
) -> None:
    deployments = objects(rendered["default"], "Deployment")
    env = env_of(main_container(deployments["recommend"]))
    assert env["RAPPORT_TRITON_GRPC_URL"] == "rapport-triton:8001"
    assert env["RAPPORT_PROFILE_URL"] == "http://rapport-profile:8082"
    assert env["RAPPORT_RECOMMEND_CATALOG_PATH"] == "/catalog/catalog.json"
    assert "RAPPORT_KAFKA_BOOTSTRAP_SERVERS" in env, "recommend reads rapport.catalog.v1"
    profile = env_of(main_container(deployments["profile"]))
    # The drift references ship beside the catalogue; recommend finds them there itself.
    assert profile["RAPPORT_PROFILE_DRIFT_REFERENCE_PATH"] == "/catalog/references.json"
    assert "RAPPORT_REDIS_URL" in env, "recommend reads the views profile publishes"
    respond = env_of(main_container(deployments["respond"]))
    assert respond["RAPPORT_RECOMMEND_URL"] == "http://rapport-recommend:8083"
    assert respond["RAPPORT_KNOWLEDGE_URL"] == "http://rapport-knowledge:8084"
    # respond reads the published views and knowledge's index itself (reads only).
    assert "RAPPORT_REDIS_URL" in respond
    assert respond["RAPPORT_RESPOND_MILVUS_URI"] == "http://milvus.milvus.svc:19530"
    assert respond["RAPPORT_RESPOND_SEARCH_CONSISTENCY"] == "Bounded"


def test_knowledge_finds_milvus_triton_and_kafka(rendered: dict[str, list[Manifest]]) -> None:
    env = env_of(main_container(objects(rendered["default"], "Deployment")["knowledge"]))
    assert env["RAPPORT_KNOWLEDGE_MILVUS_URI"] == "http://milvus.milvus.svc:19530"
    assert env["RAPPORT_KNOWLEDGE_MILVUS_DATABASE"] == "default"
    assert env["RAPPORT_KNOWLEDGE_SEARCH_CONSISTENCY"] == "Bounded"
    assert env["RAPPORT_TRITON_GRPC_URL"] == "rapport-triton:8001"
    assert env["RAPPORT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka-bootstrap.kafka.svc:9092"
    # The chart offers the consistency levels the service accepts, no more.
    schema = json.loads((CHART / "values.schema.json").read_text())
    offered = schema["properties"]["milvus"]["properties"]["searchConsistency"]["enum"]
    accepted = get_args(KnowledgeSettings.model_fields["search_consistency"].annotation)
    assert set(offered) == set(accepted)
    # Egress to Milvus on its port; only to its peers when milvus.egressTo names them.
    for value_set, peers in (("default", None), ("all-enabled", "milvus")):
        policy = objects(rendered[value_set], "NetworkPolicy")["knowledge"]["spec"]
        (rule,) = [r for r in policy["egress"] if {p["port"] for p in r["ports"]} == {19530}]
        names = [p["namespaceSelector"]["matchLabels"] for p in rule.get("to", [])]
        assert names == ([{"kubernetes.io/metadata.name": peers}] if peers else [])
    # Only knowledge, profile (its memory) and respond (reading knowledge's index) reach
    # Milvus.
    for name, policy in objects(rendered["default"], "NetworkPolicy").items():
        ports = {p["port"] for r in policy["spec"].get("egress", []) for p in r["ports"]}
        assert (19530 in ports) == (name in ("knowledge", "profile", "respond")), name


def _milvus_peers(policy: Manifest) -> list[list[dict[str, Any]]]:
    """The `to` of each egress rule towards Milvus's port."""
    rules = policy["spec"]["egress"]
    return [r.get("to", []) for r in rules if {p["port"] for p in r["ports"]} == {19530}]


def test_profile_remembers_messages_in_the_same_milvus_as_knowledge(
    rendered: dict[str, list[Manifest]],
) -> None:
    for value_set in VALUE_SETS:
        deployments = objects(rendered[value_set], "Deployment")
        profile = env_of(main_container(deployments["profile"]))
        knowledge = env_of(main_container(deployments["knowledge"]))
        assert profile["RAPPORT_PROFILE_MEMORY"] == "true"
        for setting in ("MILVUS_URI", "MILVUS_DATABASE", "SEARCH_CONSISTENCY", "MILVUS_TOKEN"):
            assert profile.get(f"RAPPORT_PROFILE_{setting}") == knowledge.get(
                f"RAPPORT_KNOWLEDGE_{setting}"
            ), (value_set, setting)
        assert profile["RAPPORT_PROFILE_MILVUS_URI"] == "http://milvus.milvus.svc:19530"
        assert profile["RAPPORT_PROFILE_MEMORY_COLLECTION"] == "rapport_memory"
        assert profile["RAPPORT_PROFILE_MEMORY_RETENTION_DAYS"] == "365"
        assert profile["RAPPORT_PROFILE_MEMORY_MAX_MESSAGES"] == "200"
        assert profile["RAPPORT_PROFILE_MEMORY_MAX_FACTS"] == "64"
    prod = env_of(main_container(objects(rendered["prod"], "Deployment")["profile"]))
    assert prod["RAPPORT_PROFILE_MILVUS_TOKEN"] == {
        "secretKeyRef": {"name": "rapport-milvus", "key": "milvus-token"}
    }
    # Egress to Milvus on its port; only to its peers when milvus.egressTo names them.
    for value_set, peers in (
        ("default", []),
        ("all-enabled", [{"kubernetes.io/metadata.name": "milvus"}]),
    ):
        policy = objects(rendered[value_set], "NetworkPolicy")["profile"]
        (to,) = _milvus_peers(policy)
        assert [p["namespaceSelector"]["matchLabels"] for p in to] == peers, value_set


def test_profile_memory_defaults_are_the_services(rendered: dict[str, list[Manifest]]) -> None:
    # values.yaml restates the service's defaults, so the chart changes nothing by default.
    env = env_of(main_container(objects(rendered["default"], "Deployment")["profile"]))
    defaults = env_vars(ProfileSettings)
    for name in (
        "RAPPORT_PROFILE_MEMORY",
        "RAPPORT_PROFILE_MEMORY_COLLECTION",
        "RAPPORT_PROFILE_MEMORY_MAX_MESSAGES",
        "RAPPORT_PROFILE_MEMORY_MAX_FACTS",
    ):
        assert env[name].lower() == defaults[name].lower(), name
    days = float(defaults["RAPPORT_PROFILE_MEMORY_RETENTION_DAYS"])
    assert float(env["RAPPORT_PROFILE_MEMORY_RETENTION_DAYS"]) == days


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ({"enabled": False}, {"RAPPORT_PROFILE_MEMORY": "false"}),
        (
            {"vectorStore": False},
            {
                "RAPPORT_PROFILE_MEMORY": "true",
                "RAPPORT_PROFILE_MEMORY_RETENTION_DAYS": "365",
                "RAPPORT_PROFILE_MEMORY_MAX_FACTS": "64",
            },
        ),
    ],
    ids=["memory-off", "facts-only"],
)
def test_profile_without_a_vector_store_gets_no_milvus(
    deploy: DeployTools, tmp_path: Path, memory: dict[str, Any], expected: dict[str, str]
) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"components": {"profile": {"memory": memory}}}))
    result = deploy.chart("render-json", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    manifests: list[Manifest] = json.loads(result.stdout)
    env = env_of(main_container(objects(manifests, "Deployment")["profile"]))
    assert {n: v for n, v in env.items() if "MEMORY" in n} == expected
    assert not [n for n in env if "MILVUS" in n or "CONSISTENCY" in n]
    assert not _milvus_peers(objects(manifests, "NetworkPolicy")["profile"])
    # knowledge keeps its Milvus.
    knowledge = env_of(main_container(objects(manifests, "Deployment")["knowledge"]))
    assert knowledge["RAPPORT_KNOWLEDGE_MILVUS_URI"] == "http://milvus.milvus.svc:19530"


def test_knowledge_scales_on_cpu_and_its_lag_trigger_names_its_own_topic() -> None:
    # An HPA on CPU by default (test_every_component_has_its_objects); should an installer
    # enable keda for it, the trigger must watch the knowledge topic and consumer group.
    knowledge = yaml.safe_load((CHART / "values.yaml").read_text())["components"]["knowledge"]
    assert "enabled" not in knowledge["keda"]
    assert knowledge["keda"]["topic"] == KNOWLEDGE_TOPIC
    assert knowledge["keda"]["consumerGroup"] == KnowledgeSettings.model_fields["group_id"].default


@pytest.mark.parametrize(
    ("value_set", "kind"), [("prod", "ServiceMonitor"), ("all-enabled", "PodMonitor")]
)
def test_monitors_name_the_job_that_alerts_and_dashboards_select(
    rendered: dict[str, list[Manifest]], value_set: str, kind: str
) -> None:
    manifests = rendered[value_set]
    monitors = objects(manifests, kind)
    assert set(monitors) == set(COMPONENTS)
    deployments = objects(manifests, "Deployment")
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
        (endpoint,) = monitor["spec"][key]
        assert endpoint["relabelings"] == [
            {"action": "replace", "targetLabel": "job", "replacement": f"rapport-{name}"}
        ]
        ports = {p["name"] for p in main_container(deployments[name])["ports"]}
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"


# ---- experiments ----------------------------------------------------------------------

EXPERIMENTS_FILE = "/etc/rapport/experiments/experiments.yaml"
EXPERIMENT_USERS = ("profile", "respond")


def experiments_of(manifests: list[Manifest]) -> tuple[Manifest | None, dict[str, Any]]:
    """The experiments ConfigMap, and per component what its pod gets of it."""
    configmap = next((m for m in manifests if m["metadata"]["name"] == "rapport-experiments"), None)
    found = {}
    for name, deployment in objects(manifests, "Deployment").items():
        pod = deployment["spec"]["template"]
        container = main_container(deployment)
        found[name] = {
            "env": {n: v for n, v in env_of(container).items() if "EXPERIMENTS" in n},
            "mounts": [m for m in container["volumeMounts"] if m["name"] == "experiments"],
            "volumes": [v for v in pod["spec"]["volumes"] if v["name"] == "experiments"],
            "checksum": pod["metadata"]["annotations"].get("checksum/experiments"),
        }
    return configmap, found


def test_schema_offers_the_experiment_names_kpis_and_count_the_services_accept() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["experiments"]
    assert schema["maxItems"] == MAX_EXPERIMENTS
    assert schema["items"]["properties"]["name"]["pattern"] == NAME_PATTERN
    assert schema["items"]["properties"]["primary_kpi"]["enum"] == [k.value for k in Kpi]


@pytest.mark.parametrize("value_set", ["default", "dev", "prod"])
def test_no_experiments_mount_nothing(rendered: dict[str, list[Manifest]], value_set: str) -> None:
    configmap, found = experiments_of(rendered[value_set])
    assert configmap is None
    for name, got in found.items():
        assert got == {"env": {}, "mounts": [], "volumes": [], "checksum": None}, name


def test_experiments_are_one_file_mounted_into_respond_and_profile(
    rendered: dict[str, list[Manifest]],
) -> None:
    configmap, found = experiments_of(rendered["all-enabled"])
    assert configmap is not None
    text = configmap["data"]["experiments.yaml"]
    assert text.startswith("version: 1\n")
    # The file the services will read, checked by the services' own model.
    parsed = parse_experiments(text, Path(EXPERIMENTS_FILE))
    values = yaml.safe_load((CHART / "ci" / "all-enabled-values.yaml").read_text())
    assert [e.name for e in parsed.experiments] == [e["name"] for e in values["experiments"]]
    checksums = set()
    for name, got in found.items():
        if name not in EXPERIMENT_USERS:
            assert got == {"env": {}, "mounts": [], "volumes": [], "checksum": None}, name
            continue
        assert got["env"] == {f"RAPPORT_{name.upper()}_EXPERIMENTS_FILE": EXPERIMENTS_FILE}
        directory = str(Path(EXPERIMENTS_FILE).parent)
        assert got["mounts"] == [{"name": "experiments", "mountPath": directory, "readOnly": True}]
        (volume,) = got["volumes"]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        checksums.add(got["checksum"])
    assert len(checksums) == 1
    assert None not in checksums


def test_changing_the_experiments_rolls_respond_and_profile(
    rendered: dict[str, list[Manifest]], deploy: DeployTools, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    experiment = {
        "name": "prompt-test",
        "variants": [
            {"name": "control", "weight": 1},
            {"name": "shorter", "weight": 1, "changes": {"llm_instructions": "Be brief."}},
        ],
        "start": (now - timedelta(days=1)).isoformat(),
        "stop": (now + timedelta(days=13)).isoformat(),
        "primary_kpi": "positive_feedback",
    }
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"experiments": [experiment]}))
    result = deploy.chart("render-json", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    configmap, found = experiments_of(json.loads(result.stdout))
    assert configmap is not None
    (parsed,) = parse_experiments(configmap["data"]["experiments.yaml"], values).experiments
    assert parsed.running(now)
    _, before = experiments_of(rendered["all-enabled"])
    for name in EXPERIMENT_USERS:
        assert found[name]["checksum"] not in (None, before[name]["checksum"]), name
    assert {n for n, got in found.items() if got["checksum"]} == set(EXPERIMENT_USERS)


def test_dashboards_ship_as_configmaps_the_grafana_sidecar_finds(
    rendered: dict[str, list[Manifest]],
) -> None:
    maps = [m for m in rendered["prod"] if m["kind"] == "ConfigMap"]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(name for m in maps for name in m["data"]) == files
    for configmap in maps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "Rapport"}
        (text,) = configmap["data"].values()
        dashboard = json.loads(text)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["traces_uid"]["query"] == "jaeger"


def test_retraining_is_off_by_default_and_writes_to_the_claim_triton_reads(
    rendered: dict[str, list[Manifest]],
) -> None:
    for value_set in ("default", "dev", "prod"):
        assert not [m for m in rendered[value_set] if m["kind"] == "CronJob"], value_set
    (job,) = [m for m in rendered["all-enabled"] if m["kind"] == "CronJob"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid", "two exports would race for a version"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "retrain"
    assert "--tenant=acme" in args
    assert "--repository=/models/repository" in args
    assert "--catalog=/models/catalog/catalog.json" in args
    assert "--pushgateway=http://pushgateway.monitoring.svc:9091" in args
    env = env_of(container)
    assert env["RAPPORT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka-kafka-bootstrap.kafka.svc:9093"
    assert env["RAPPORT_MONGO_URL"] == {
        "secretKeyRef": {"name": "rapport-mongo", "key": "mongo-url"}
    }
    triton = objects(rendered["all-enabled"], "Deployment")["triton"]["spec"]["template"]["spec"]
    triton_claim = next(v for v in triton["volumes"] if v["name"] == "model-repository")
    (claim,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    claim_name = claim["persistentVolumeClaim"]["claimName"]
    assert claim_name == triton_claim["persistentVolumeClaim"]["claimName"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])
    assert not mount.get("readOnly"), "it writes the new version"
    policy = objects(rendered["all-enabled"], "NetworkPolicy")["retrain"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {9093, 27017, 9091} <= egress_ports
    assert policy["spec"]["ingress"] == []
