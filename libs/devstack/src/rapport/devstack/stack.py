"""The local mesh: start it, describe it in ``.rapport/stack.json``, stop exactly it.

``stack.json`` is how tools, tests and people find the running mesh::

    {"infra": {"kafka": "127.0.0.1:P", "mongo": "mongodb://...", "redis": "redis://...",
               "triton_http": "http://...", "triton_grpc": "127.0.0.1:P"},
     "services": {"ingest": "http://127.0.0.1:P", ...},
     "api_key": "<dev key with every scope>",
     "pids": {"kafka": 123, ...},
     "processes": {"kafka": {"pid": 123, "create_time": ..., "argv": [...], ...}, ...}}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rapport.common.auth import ALL_SCOPES, generate_key, key_entry
from rapport.common.kafka import default_topics, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.devstack import processes, servers, triton
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.servers import RunningServer, ServerSpec

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
SERVICE_ENTRY_POINTS = "rapport.services"
# Start order: a service may call the ones before it.
SERVICE_ORDER = ("profile", "recommend", "ingest", "respond")


class StackError(RuntimeError):
    pass


@dataclass
class StackConfig:
    home: Path = Path(".rapport")
    with_triton: bool = True
    with_services: bool = True
    model_repository: Path | None = None
    external_mongo_url: str | None = None
    # Where services and Triton send traces (OTLP/HTTP base URL, e.g. a local Jaeger).
    otlp_endpoint: str | None = None
    service_env: dict[str, str] = field(default_factory=dict)  # added to every service's env

    @classmethod
    def from_env(cls, home: Path) -> StackConfig:
        repo = os.environ.get("RAPPORT_MODEL_REPOSITORY")
        return cls(
            home=home,
            model_repository=Path(repo) if repo else None,
            external_mongo_url=os.environ.get("RAPPORT_MONGO_URL") or None,
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        )


def stack_path(home: Path) -> Path:
    return home / STACK_FILE


def read_stack(home: Path) -> dict[str, Any] | None:
    path = stack_path(home)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def write_stack(home: Path, data: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    tmp = stack_path(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o600)  # it holds the dev API key
    tmp.replace(stack_path(home))


def handles_of(data: dict[str, Any]) -> list[ProcessHandle]:
    return [ProcessHandle.from_json(h) for h in data.get("processes", {}).values()]


def installed_services() -> list[str]:
    names = {ep.name for ep in entry_points(group=SERVICE_ENTRY_POINTS)}
    return [n for n in SERVICE_ORDER if n in names] + sorted(names - set(SERVICE_ORDER))


def default_model_repository() -> Path:
    """``models/repository`` when the training pipeline has built one, else the smoke model."""
    built = Path("models/repository")
    return built if built.is_dir() else triton.smoke_repository()


def infra_env(infra: dict[str, str]) -> dict[str, str]:
    """The shared settings every service reads (see rapport.common.settings)."""
    env = {
        "RAPPORT_KAFKA_BOOTSTRAP_SERVERS": infra["kafka"],
        "RAPPORT_MONGO_URL": infra["mongo"],
        "RAPPORT_REDIS_URL": infra["redis"],
    }
    if "triton_grpc" in infra:
        env["RAPPORT_TRITON_GRPC_URL"] = infra["triton_grpc"]
        env["RAPPORT_TRITON_HTTP_URL"] = infra["triton_http"]
    return env


DEV_TENANT = "dev"


def dev_key_env(token: str) -> dict[str, str]:
    """The services accept the dev key (every scope, tenant ``dev``); they store only its hash."""
    entry = key_entry(token, key_id="dev", tenant=DEV_TENANT, scopes=ALL_SCOPES)
    return {"RAPPORT_API_KEYS": json.dumps([entry.model_dump(mode="json", exclude_none=True)])}


def service_spec(name: str, port: int, env: dict[str, str]) -> ServerSpec:
    prefix = f"RAPPORT_{name.upper()}_"
    base_url = f"http://127.0.0.1:{port}"
    return ServerSpec(
        name=name,
        argv=[servers.console_script(f"rapport-{name}")],
        probe=lambda: servers.probe_http_ok(f"{base_url}/readyz"),
        urls={name: base_url},
        env={
            **env,
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}PORT": str(port),
            "OTEL_SERVICE_NAME": f"rapport-{name}",
        },
        start_timeout_s=60.0,
    )


class Stack:
    """Servers started in order and stopped in reverse; usable as a context manager."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[RunningServer] = []

    def start(self, spec: ServerSpec) -> RunningServer:
        server = servers.start(spec, self.log_dir)
        self.running.append(server)
        return server

    def stop_all(self) -> list[str]:
        stopped = []
        for server in reversed(self.running):
            if processes.stop(server.handle):
                stopped.append(server.spec.name)
        self.running.clear()
        return stopped


def up(config: StackConfig) -> dict[str, Any]:
    """Start the infrastructure and the installed services; write stack.json."""
    existing = read_stack(config.home)
    if existing and any(processes.is_running(h) for h in handles_of(existing)):
        raise StackError(
            f"a stack is already running ({stack_path(config.home)}); `make down` first"
        )
    log_dir = config.home / "logs"
    data_dir = config.home / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    stack = Stack(log_dir)
    data: dict[str, Any] = {
        "infra": {},
        "services": {},
        "api_key": generate_key("dev"),
        "pids": {},
        "processes": {},
    }

    def record(server: RunningServer, section: str) -> None:
        data[section].update(server.urls)
        data["pids"][server.spec.name] = server.handle.pid
        data["processes"][server.spec.name] = server.handle.to_json()
        write_stack(config.home, data)  # written as we go, so `down` can clean up a failed `up`

    free = processes.free_port
    try:
        record(stack.start(servers.kafka_spec(free())), "infra")
        if config.external_mongo_url:
            data["infra"]["mongo"] = config.external_mongo_url
        else:
            record(stack.start(servers.mongo_spec(free(), data_dir)), "infra")
        record(stack.start(servers.redis_spec(free(), data_dir)), "infra")
        repository = (config.model_repository or default_model_repository()).resolve()
        if config.with_triton:
            spec = triton.triton_spec(
                http_port=free(),
                grpc_port=free(),
                metrics_port=free(),
                model_repository=repository,
                otlp_traces_url=f"{config.otlp_endpoint}/v1/traces"
                if config.otlp_endpoint
                else None,
            )
            record(stack.start(spec), "infra")
        kafka = KafkaSettings(kafka_bootstrap_servers=data["infra"]["kafka"])
        asyncio.run(ensure_topics(kafka, default_topics()))
        if config.with_services:
            env = {**infra_env(data["infra"]), **dev_key_env(data["api_key"])}
            if config.otlp_endpoint:
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = config.otlp_endpoint
            env |= config.service_env
            catalog = repository.parent / "catalog.json"
            if catalog.is_file():
                env["RAPPORT_RECOMMEND_CATALOG_PATH"] = str(catalog)
            for name in installed_services():  # in order: each finds those it calls
                record(stack.start(service_spec(name, free(), env)), "services")
                env[f"RAPPORT_{name.upper()}_URL"] = data["services"][name]
    except BaseException:
        stack.stop_all()
        stack_path(config.home).unlink(missing_ok=True)
        raise
    return data


def down(home: Path) -> list[str]:
    """Stop exactly the processes ``up`` recorded (PID and start time must match)."""
    data = read_stack(home)
    if data is None:
        return []
    stopped = [h.name for h in reversed(handles_of(data)) if processes.stop(h)]
    stack_path(home).unlink(missing_ok=True)
    return stopped


@dataclass
class StatusRow:
    name: str
    pid: int | None
    running: bool
    answer: str
    url: str


def _probes(data: dict[str, Any]) -> dict[str, tuple[str, servers.Probe]]:
    """What to ask each recorded server, and the URL it is reached at."""
    infra = data["infra"]
    found: dict[str, tuple[str, servers.Probe]] = {}
    if "kafka" in infra:
        found["kafka"] = (infra["kafka"], partial(servers.probe_kafka, infra["kafka"]))
    if "mongo" in infra:
        found["mongo"] = (infra["mongo"], partial(servers.probe_mongo, infra["mongo"]))
    if "redis" in infra:
        found["redis"] = (infra["redis"], partial(servers.probe_redis, infra["redis"]))
    if "triton_http" in infra:
        ready = f"{infra['triton_http']}/v2/health/ready"
        found["triton"] = (infra["triton_http"], partial(servers.probe_http_ok, ready))
    for name, url in data["services"].items():
        found[name] = (url, partial(servers.probe_http_ok, f"{url}/readyz"))
    return found


async def _probe_all(data: dict[str, Any]) -> list[StatusRow]:
    probes = _probes(data)
    answers = await asyncio.gather(*(servers.probe_once(probe) for _, probe in probes.values()))
    handles = {h.name: h for h in handles_of(data)}
    rows = []
    for (name, (url, _)), answer in zip(probes.items(), answers, strict=True):
        handle = handles.get(name)
        rows.append(
            StatusRow(
                name=name,
                pid=handle.pid if handle else None,
                # An external server (e.g. RAPPORT_MONGO_URL) has no process of ours.
                running=processes.is_running(handle) if handle else True,
                answer=answer,
                url=url,
            )
        )
    return rows


def status(home: Path) -> list[StatusRow] | None:
    data = read_stack(home)
    if data is None:
        return None
    return asyncio.run(_probe_all(data))
