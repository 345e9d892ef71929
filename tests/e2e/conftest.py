"""One collector and one mesh for the whole e2e tier (tests/e2e/mesh.py), stopped after its
last test: the integration tier, which runs after it in `make test`, has the CPUs back."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from rapport.devstack import processes, stack
from rapport.devstack.waiting import eventually
from tests.e2e.mesh import Collector, Mesh, run_collector

# Spans reach the collector quickly: the services' and Triton's batch span processors
# export every 200 ms, not every 5 s.
EXPORT_DELAY_MS = 200


@pytest_asyncio.fixture(scope="package")
async def collector() -> AsyncIterator[Collector]:
    async with run_collector() as found:
        yield found


@pytest_asyncio.fixture(scope="package")
async def mesh(
    collector: Collector, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    """The mesh as ``make up`` runs it (memory and knowledge on), every span sampled and
    exported to ``collector``."""
    home = tmp_path_factory.mktemp("mesh")
    repository = home / "models" / "repository"
    shutil.copytree(model_repository, repository)
    shutil.copy2(model_repository.parent / "catalog.json", repository.parent / "catalog.json")
    config = stack.StackConfig(
        home=home,
        model_repository=repository,
        otlp_endpoint=collector.url,
        otlp_export_delay_ms=EXPORT_DELAY_MS,
        service_env={
            "OTEL_TRACES_SAMPLER": "always_on",
            # Functional checks on a loaded 2-core CI machine: no part may time out and
            # degrade by accident (the fault tests and bench/ cover the real budgets).
            "RAPPORT_RECOMMEND_TRITON_TIMEOUT_MS": "2000",
            "RAPPORT_PROFILE_TIMEOUT_MS": "2000",
            "RAPPORT_RECOMMEND_TIMEOUT_MS": "2000",
            "RAPPORT_KNOWLEDGE_TIMEOUT_MS": "2000",
        },
    )
    data = await asyncio.to_thread(stack.up, config)
    try:
        async with aiohttp.ClientSession() as http:
            mesh = Mesh(data, http, home)

            async def models_ready() -> bool:
                _, body = await mesh.call("GET", "recommend", "/readyz")
                return bool(body["status"] == "ready")

            await eventually(models_ready, timeout_s=120)
            yield mesh
    finally:
        await asyncio.to_thread(stack.down, home)
        assert not [h.name for h in stack.handles_of(data) if processes.is_running(h)]
