"""Each service as a user starts it: ``python -m rapport.<service>`` (the README advertises
it beside the console script), then its API docs in a real browser with no way out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from rapport.devstack import servers
from rapport.devstack.processes import free_port, stop
from rapport.devstack.servers import RunningServer
from rapport.devstack.stack import infra_env, keys_env, service_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ["ingest", "profile", "recommend", "respond", "knowledge"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


@pytest.fixture(scope="module", params=SERVICES)
def started(
    request: pytest.FixtureRequest, infra: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, RunningServer]]:
    """``python -m rapport.<name>``, started and answering ``/livez``."""
    name: str = request.param
    port = free_port()
    env = infra_env(infra) | keys_env("rpk_entry_" + name, key_id="entry", tenant="dev")
    # respond probes these for readiness only; /livez does not wait for them.
    env |= {f"RAPPORT_{other.upper()}_URL": "http://127.0.0.1:9" for other in SERVICES}
    env |= {"OTEL_SDK_DISABLED": "true", f"RAPPORT_{name.upper()}_LOG_LEVEL": "WARNING"}
    base = f"http://127.0.0.1:{port}"
    spec = dataclasses.replace(
        service_spec(name, port, env),
        argv=[sys.executable, "-m", f"rapport.{name}"],
        probe=lambda: servers.probe_http_ok(f"{base}/livez"),
    )
    server = servers.start(spec, tmp_path_factory.mktemp(name))
    try:
        yield name, base, server
    finally:
        stop(server.handle)


async def get_json(url: str) -> object:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, url
        return await response.json()


def test_python_dash_m_serves_the_service(started: tuple[str, str, RunningServer]) -> None:
    name, base, server = started
    assert server.handle.argv[1:] == ("-m", f"rapport.{name}")
    assert asyncio.run(get_json(f"{base}/livez")) == {"status": "alive"}


def rendered_dom(url: str, profile_dir: Path) -> str:
    """The page after its scripts ran, in headless Chromium that resolves no host but
    loopback: an asset from a CDN fails to load, as in a cluster with no way out."""
    assert CHROMIUM, "chromium is missing: make install installs Debian's package"
    done = subprocess.run(  # noqa: S603
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile_dir}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout


def test_docs_render_every_operation_offline(
    started: tuple[str, str, RunningServer], tmp_path: Path
) -> None:
    _, base, _ = started
    document = asyncio.run(get_json(f"{base}/openapi.json"))
    assert isinstance(document, dict)
    paths = set(document["paths"])
    dom = rendered_dom(f"{base}/docs", tmp_path / "chromium")
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert rendered == paths, json.dumps(sorted(paths ^ rendered))
