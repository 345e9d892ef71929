"""Session-scoped pytest fixtures: the same real servers as ``rapport-dev up``, on free ports.

Each server starts the first time a test asks for it and stops when the
session ends. Fixtures that hand out a running server yield a
:class:`~rapport.devstack.servers.RunningServer` (``.url()``, ``.handle``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from rapport.common.settings import KafkaSettings, MongoSettings, RedisSettings
from rapport.devstack import processes, servers, triton
from rapport.devstack.servers import RunningServer, ServerSpec


def serve(spec: ServerSpec, log_dir: Path) -> Iterator[RunningServer]:
    """Start ``spec`` for the duration of a fixture; always stop it afterwards."""
    server = servers.start(spec, log_dir)
    try:
        yield server
    finally:
        processes.stop(server.handle)


@asynccontextmanager
async def serve_app(app: ASGIApp, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve an ASGI app with a real uvicorn in the running loop; yields its base URL.

    Tests then speak real HTTP to it, lifespan included, and can pause or kill
    the servers behind it.
    """
    port = processes.free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited during start-up")
        await asyncio.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
def devstack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devstack")


@pytest.fixture(scope="session")
def kafka_server(devstack_dir: Path) -> Iterator[RunningServer]:
    yield from serve(servers.kafka_spec(processes.free_port()), devstack_dir)


@pytest.fixture(scope="session")
def mongo_server(devstack_dir: Path) -> Iterator[RunningServer]:
    yield from serve(servers.mongo_spec(processes.free_port(), devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def redis_server(devstack_dir: Path) -> Iterator[RunningServer]:
    yield from serve(servers.redis_spec(processes.free_port(), devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def triton_server(devstack_dir: Path) -> Iterator[RunningServer]:
    """Triton serving devstack's smoke model repository (takes ~10 s to load)."""
    spec = triton.triton_spec(
        http_port=processes.free_port(),
        grpc_port=processes.free_port(),
        metrics_port=processes.free_port(),
        model_repository=triton.smoke_repository(),
    )
    yield from serve(spec, devstack_dir)


@pytest.fixture(scope="session")
def kafka_settings(kafka_server: RunningServer) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=kafka_server.url("kafka"))


@pytest.fixture(scope="session")
def mongo_settings(mongo_server: RunningServer) -> MongoSettings:
    return MongoSettings(mongo_url=mongo_server.url("mongo"))


@pytest.fixture(scope="session")
def redis_settings(redis_server: RunningServer) -> RedisSettings:
    return RedisSettings(redis_url=redis_server.url("redis"))
