"""``python -m rapport.<service>`` starts the server, as the console script does: the
README advertises both, so a real process per service must answer ``/livez``."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import aiohttp
import pytest

from rapport.devstack import servers
from rapport.devstack.processes import free_port, stop
from rapport.devstack.servers import RunningServer
from rapport.devstack.stack import infra_env, keys_env, service_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ["ingest", "profile", "recommend", "respond", "knowledge"]


async def livez(base: str) -> object:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/livez") as response:
        assert response.status == 200
        return await response.json()


@pytest.fixture(scope="module")
def infra(
    kafka_server: RunningServer,
    mongo_server: RunningServer,
    redis_server: RunningServer,
    milvus_server: RunningServer,
    models_triton: RunningServer,
) -> dict[str, str]:
    return {
        "kafka": kafka_server.url(),
        "mongo": mongo_server.url(),
        "redis": redis_server.url(),
        "milvus": milvus_server.url(),
        "triton_grpc": models_triton.url("triton_grpc"),
        "triton_http": models_triton.url("triton_http"),
    }


@pytest.mark.parametrize("name", SERVICES)
def test_python_dash_m_serves_livez(name: str, infra: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = infra_env(infra) | keys_env("rpk_entry_" + name, key_id="entry", tenant="dev")
    # respond probes these at readiness only; /livez does not wait for them.
    env |= {f"RAPPORT_{other.upper()}_URL": "http://127.0.0.1:9" for other in SERVICES}
    env |= {"OTEL_SDK_DISABLED": "true", f"RAPPORT_{name.upper()}_LOG_LEVEL": "WARNING"}
    base = f"http://127.0.0.1:{port}"
    spec = dataclasses.replace(
        service_spec(name, port, env),
        argv=[sys.executable, "-m", f"rapport.{name}"],
        probe=lambda: servers.probe_http_ok(f"{base}/livez"),
    )
    started = servers.start(spec, tmp_path)
    try:
        # start() returned, so /livez answered 200 from the process `-m` started.
        assert started.handle.argv[1:] == ("-m", f"rapport.{name}")
        assert asyncio.run(livez(base)) == {"status": "alive"}
    finally:
        stop(started.handle)
