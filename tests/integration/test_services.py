"""Each service process: bad settings exit with one line; readiness reflects real dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rapport.devstack.processes import free_port
from rapport.devstack.servers import RunningServer
from rapport.ingest.app import create_app as create_ingest
from rapport.ingest.settings import IngestSettings
from rapport.profile.app import create_app as create_profile
from rapport.profile.settings import ProfileSettings
from rapport.recommend.app import create_app as create_recommend
from rapport.recommend.settings import RecommendSettings
from rapport.respond.app import create_app as create_respond
from rapport.respond.settings import RespondSettings

pytestmark = pytest.mark.integration

SERVICES = ["ingest", "profile", "recommend", "respond"]


@pytest.mark.parametrize("service", SERVICES)
def test_invalid_setting_exits_non_zero_with_one_line_naming_it(service: str) -> None:
    variable = f"RAPPORT_{service.upper()}_PORT"
    env = {**os.environ, variable: "eighty"}
    result = subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / f"rapport-{service}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"invalid settings: {variable}:")


def test_ingest_is_ready_with_a_real_broker(kafka_server: RunningServer) -> None:
    settings = IngestSettings(kafka_bootstrap_servers=kafka_server.url("kafka"))
    with TestClient(create_ingest(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"kafka": "ok"}


def test_profile_readiness_follows_mongo_and_kafka(
    mongo_server: RunningServer, kafka_server: RunningServer
) -> None:
    kafka = kafka_server.url("kafka")
    settings = ProfileSettings(
        mongo_url=mongo_server.url("mongo"),
        kafka_bootstrap_servers=kafka,
        group_id=f"g.ready.{free_port()}",
    )
    with TestClient(create_profile(settings)) as client:
        assert client.get("/readyz").json()["checks"] == {"mongo": "ok", "kafka": "ok"}
    unreachable = ProfileSettings(
        mongo_url=f"mongodb://127.0.0.1:{free_port()}",
        mongo_timeout_ms=300,
        kafka_bootstrap_servers=kafka,
        consume=False,
    )
    with TestClient(create_profile(unreachable)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["checks"]["mongo"] != "ok"
        assert client.get("/livez").status_code == 200


@pytest.mark.parametrize("service", ["recommend", "respond"])
def test_services_with_fallbacks_have_no_hard_dependency(service: str) -> None:
    app = (
        create_recommend(RecommendSettings())
        if service == "recommend"
        else create_respond(RespondSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"))
    )
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 200
        # Nothing runs: dependencies are reported, none takes the service out of rotation.
        assert response.json()["status"] in {"ready", "degraded"}
        if service == "respond":
            assert response.json()["status"] == "degraded"
            assert set(response.json()["checks"]) == {"kafka", "redis", "profile", "recommend"}
        assert client.get("/metrics").status_code == 200
