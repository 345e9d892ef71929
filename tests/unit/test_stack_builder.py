"""The local stack's one builder: what each service is started with (no server runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rapport.common.auth import ApiKeyStore
from rapport.devstack.stack import Mesh, MeshPlan, keys_env, service_env
from rapport.ingest.settings import IngestSettings

pytestmark = pytest.mark.unit

INFRA = {"kafka": "127.0.0.1:1", "mongo": "mongodb://127.0.0.1:2", "redis": "redis://127.0.0.1:3/0"}


def test_a_service_finds_the_infrastructure_and_the_services_started_before_it() -> None:
    env = service_env(
        "respond",
        infra=INFRA,
        services={"profile": "http://127.0.0.1:4", "recommend": "http://127.0.0.1:5"},
        api_keys={"RAPPORT_API_KEYS": "[]"},
        log_level="WARNING",
        extra={"RAPPORT_RECOMMEND_URL": "http://127.0.0.1:6"},
    )
    assert env["RAPPORT_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1"
    assert env["RAPPORT_PROFILE_URL"] == "http://127.0.0.1:4"
    assert env["RAPPORT_RECOMMEND_URL"] == "http://127.0.0.1:6", "extra comes last"
    assert env["RAPPORT_RESPOND_LOG_LEVEL"] == "WARNING"
    assert env["RAPPORT_API_KEYS"] == "[]"
    assert "RAPPORT_TRITON_GRPC_URL" not in env, "no Triton in this run: the default stays"


def test_the_keys_a_run_hands_out_are_ones_the_services_accept() -> None:
    limited = keys_env("rpk_test_0123456789abcdefghijklmnop", key_id="t", tenant="acme")
    unlimited = keys_env(
        "rpk_test_0123456789abcdefghijklmnop", key_id="t", tenant="acme", unlimited=True
    )
    for env in (limited, unlimited):
        store = ApiKeyStore.from_settings(IngestSettings(api_keys=env["RAPPORT_API_KEYS"]))
        assert len(store) == 1  # parsed as the services parse it
    (entry,) = json.loads(unlimited["RAPPORT_API_KEYS"])
    assert entry["rate_per_s"] >= 1e9
    assert "rate_per_s" not in json.loads(limited["RAPPORT_API_KEYS"])[0]


def test_a_plan_layers_every_service_env_then_the_service_own_then_the_call(
    tmp_path: Path,
) -> None:
    (tmp_path / "repository").mkdir()
    (tmp_path / "catalog.json").write_text("[]")
    plan = MeshPlan(
        api_keys={"RAPPORT_API_KEYS": "[]"},
        model_repository=tmp_path / "repository",
        otlp_endpoint="http://127.0.0.1:4318",
        service_env={"A": "every", "B": "every"},
        env={"recommend": {"B": "own", "C": "own"}},
    )
    spec = plan.spec("recommend", Mesh(infra=INFRA), {"C": "call"})
    assert (spec.env["A"], spec.env["B"], spec.env["C"]) == ("every", "own", "call")
    assert spec.env["RAPPORT_RECOMMEND_CATALOG_PATH"] == str(tmp_path / "catalog.json")
    assert spec.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert spec.argv[0].endswith("rapport-recommend")
