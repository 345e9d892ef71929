"""The local mesh: the one builder of it, ``up`` (described in ``.rapport/stack.json``)
and ``down`` (stops exactly it).

Everything that runs the mesh locally builds it here, so a server or a setting is
added once: ``make up`` and the demo (:func:`up`), the benchmarks (:func:`start_mesh`
on a :class:`Stack`), the chaos matrix (:func:`infra_spec` and :func:`service_env`,
under its own driver, which pauses and kills servers) and the pytest fixtures
(:func:`infra_spec`, one lazily started server per fixture).

``stack.json`` is how tools, tests and people find the running mesh::

    {"infra": {"kafka": "127.0.0.1:P", "mongo": "mongodb://...", "redis": "redis://...",
               "milvus": "http://...", "triton_http": "http://...", "triton_grpc": "127.0.0.1:P",
               "triton_metrics": "http://..."},
     "services": {"ingest": "http://127.0.0.1:P", ...},
     "api_key": "<dev key with every scope>",
     "experiments": "<the experiments file respond and profile run, or null>",
     "pids": {"kafka": 123, ...},
     "processes": {"kafka": {"pid": 123, "create_time": ..., "argv": [...], ...}, ...}}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from rapport.common.auth import ALL_SCOPES, generate_key, key_entry
from rapport.common.experiments import ExperimentFileError, load_experiments
from rapport.common.kafka import TopicSpec, default_topics, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.devstack import processes, servers, triton
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.servers import RunningServer, ServerSpec

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
SERVICE_ENTRY_POINTS = "rapport.services"
# Start order: a service may call the ones before it.
SERVICE_ORDER = ("profile", "recommend", "knowledge", "ingest", "respond")
InfraName = Literal["kafka", "mongo", "redis", "milvus", "triton"]
INFRA: tuple[InfraName, ...] = ("kafka", "mongo", "redis", "milvus", "triton")
# knowledge embeds with this model: without it (the smoke repository) it is not started.
KNOWLEDGE_NEEDS_MODEL = "encoder"


class StackError(RuntimeError):
    pass


# Which experiments the mesh runs: unset, the devstack's own file; a path, that file;
# ``off``, none.
EXPERIMENTS_VARIABLE = "RAPPORT_DEV_EXPERIMENTS"
EXPERIMENTS_OFF = "off"
# The services that read the experiments file, each by its own setting.
EXPERIMENT_SERVICES = ("respond", "profile")


def default_experiments() -> Path:
    """The demo experiments shipped with devstack (tone-empathetic, memory-off)."""
    return Path(str(resources.files("rapport.devstack") / "experiments.yaml"))


def experiments_choice(value: str | None) -> Path | None:
    """``RAPPORT_DEV_EXPERIMENTS`` (or ``up --experiments``) as a file: unset or empty,
    the shipped one; ``off``, none."""
    if not value:
        return default_experiments()
    if value.strip().lower() == EXPERIMENTS_OFF:
        return None
    return Path(value).expanduser().resolve()


def experiments_env(path: Path | None) -> dict[str, dict[str, str]]:
    """Per service, the setting that points it at ``path`` (nothing when None)."""
    if path is None:
        return {}
    return {s: {f"RAPPORT_{s.upper()}_EXPERIMENTS_FILE": str(path)} for s in EXPERIMENT_SERVICES}


def check_experiments(path: Path | None) -> None:
    """Refuse a file the services would refuse, before anything starts: its problems in
    one message, not in two services' logs."""
    try:
        load_experiments(path)
    except ExperimentFileError as exc:
        lines = "\n".join(exc.lines)
        raise StackError(
            f"the experiments file cannot be used ({EXPERIMENTS_VARIABLE}=off runs none):\n{lines}"
        ) from exc


@dataclass
class StackConfig:
    home: Path = Path(".rapport")
    with_triton: bool = True
    with_services: bool = True
    model_repository: Path | None = None
    external_mongo_url: str | None = None
    # Where services and Triton send traces (OTLP/HTTP base URL, e.g. a local Jaeger).
    otlp_endpoint: str | None = None
    # How often each process exports the spans it holds (its default: every 5 s).
    otlp_export_delay_ms: int | None = None
    service_env: dict[str, str] = field(default_factory=dict)  # added to every service's env
    experiments_file: Path | None = None  # respond's and profile's; None: no experiment runs

    @classmethod
    def from_env(cls, home: Path) -> StackConfig:
        repo = os.environ.get("RAPPORT_MODEL_REPOSITORY")
        return cls(
            home=home,
            model_repository=Path(repo) if repo else None,
            external_mongo_url=os.environ.get("RAPPORT_MONGO_URL") or None,
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            experiments_file=experiments_choice(os.environ.get(EXPERIMENTS_VARIABLE)),
        )


def print_endpoints(data: dict[str, Any]) -> None:
    """Where each server and service of a running mesh answers, one per line."""
    for section in ("infra", "services"):
        for name, url in data[section].items():
            print(f"  {name:<14} {url}")


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


def services_for(services: Sequence[str], repository: Path | None) -> list[str]:
    """``services`` less knowledge when Triton does not serve the encoder it needs."""
    has_encoder = repository is not None and (repository / KNOWLEDGE_NEEDS_MODEL).is_dir()
    return [s for s in services if s != "knowledge" or has_encoder]


INFRA_VARIABLES: dict[str, tuple[str, ...]] = {
    "kafka": ("RAPPORT_KAFKA_BOOTSTRAP_SERVERS",),
    "mongo": ("RAPPORT_MONGO_URL",),
    "redis": ("RAPPORT_REDIS_URL",),
    # knowledge's documents and profile's remembered messages, in one local server;
    # respond reads knowledge's index there on the reply path.
    "milvus": (
        "RAPPORT_KNOWLEDGE_MILVUS_URI",
        "RAPPORT_PROFILE_MILVUS_URI",
        "RAPPORT_RESPOND_MILVUS_URI",
    ),
    "triton_grpc": ("RAPPORT_TRITON_GRPC_URL",),
    "triton_http": ("RAPPORT_TRITON_HTTP_URL",),
}


def infra_env(infra: Mapping[str, str]) -> dict[str, str]:
    """The shared settings every service reads (see rapport.common.settings), for the
    servers ``infra`` has: a run without one (no MongoDB for ingest) leaves it unset."""
    return {
        variable: infra[key]
        for key, variables in INFRA_VARIABLES.items()
        if key in infra
        for variable in variables
    }


DEV_TENANT = "dev"


def keys_env(token: str, *, key_id: str, tenant: str, unlimited: bool = False) -> dict[str, str]:
    """``RAPPORT_API_KEYS`` accepting ``token`` with every scope (services keep its hash).

    ``unlimited`` lifts the per-key rate limit: for load and fault runs, where the
    token bucket is not what is measured.
    """
    entry = key_entry(token, key_id=key_id, tenant=tenant, scopes=ALL_SCOPES)
    stored = entry.model_dump(mode="json", exclude_none=True)
    if unlimited:
        stored |= {"rate_per_s": 1e9, "burst": 10**9}
    return {"RAPPORT_API_KEYS": json.dumps([stored])}


def dev_key_env(token: str) -> dict[str, str]:
    """The services accept the dev key (every scope, tenant ``dev``)."""
    return keys_env(token, key_id="dev", tenant=DEV_TENANT)


def infra_spec(
    name: InfraName,
    data_dir: Path,
    *,
    model_repository: Path | None = None,
    otlp_endpoint: str | None = None,
    otlp_export_delay_ms: int | None = None,
) -> ServerSpec:
    """One infrastructure server on free ports (Triton serves ``model_repository``)."""
    free = processes.free_port
    if name == "kafka":
        return servers.kafka_spec(free())
    if name == "mongo":
        return servers.mongo_spec(free(), data_dir)
    if name == "redis":
        return servers.redis_spec(free(), data_dir)
    if name == "milvus":
        return servers.milvus_spec(free(), data_dir)
    return triton.triton_spec(
        http_port=free(),
        grpc_port=free(),
        metrics_port=free(),
        model_repository=model_repository or triton.smoke_repository(),
        otlp_traces_url=f"{otlp_endpoint}/v1/traces" if otlp_endpoint else None,
        trace_export_delay_ms=otlp_export_delay_ms,
    )


def service_env(
    name: str,
    *,
    infra: Mapping[str, str],
    services: Mapping[str, str],
    api_keys: Mapping[str, str],
    log_level: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A service's environment: the infrastructure, the services started before it (each
    found by ``RAPPORT_<NAME>_URL``), the API keys, then ``extra`` over all of it."""
    env = {**infra_env(infra), **api_keys}
    env |= {f"RAPPORT_{other.upper()}_URL": url for other, url in services.items()}
    if log_level:
        env[f"RAPPORT_{name.upper()}_LOG_LEVEL"] = log_level
    return env | dict(extra or {})


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

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, spec: ServerSpec) -> RunningServer:
        server = servers.start(spec, self.log_dir)
        self.running.append(server)
        return server

    def stop(self, server: RunningServer) -> None:
        """One server, before the others (a benchmark's run that is over)."""
        processes.stop(server.handle)
        self.running.remove(server)

    def stop_all(self) -> list[str]:
        stopped = []
        for server in reversed(self.running):
            if processes.stop(server.handle):
                stopped.append(server.spec.name)
        self.running.clear()
        return stopped


@dataclass
class MeshPlan:
    """What to start: infrastructure, then services in order, and every service's env."""

    api_keys: dict[str, str]  # RAPPORT_API_KEYS (keys_env)
    infra: Sequence[InfraName] = INFRA
    services: Sequence[str] = ()  # in start order: each finds the ones before it
    topics: Sequence[TopicSpec] | None = None  # default: default_topics()
    model_repository: Path | None = None  # Triton's; catalog.json beside it goes to recommend
    external_mongo_url: str | None = None  # instead of starting one
    otlp_endpoint: str | None = None  # services and Triton export traces there
    otlp_export_delay_ms: int | None = None  # every process's span export delay
    log_level: str | None = None  # every service's
    service_env: dict[str, str] = field(default_factory=dict)  # added to every service's
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # one service's, last

    def spec(self, name: str, mesh: Mesh, extra: Mapping[str, str] | None = None) -> ServerSpec:
        """``rapport-<name>`` on a free port, wired to what ``mesh`` runs; ``extra`` last."""
        common = dict(self.service_env)
        if self.otlp_endpoint:
            common["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if self.otlp_export_delay_ms is not None:
            common["OTEL_BSP_SCHEDULE_DELAY"] = str(self.otlp_export_delay_ms)
        catalog = (self.model_repository or default_model_repository()).resolve().parent
        if (catalog / "catalog.json").is_file():  # the titles of the models Triton serves
            common["RAPPORT_RECOMMEND_CATALOG_PATH"] = str(catalog / "catalog.json")
        if (catalog / "references.json").is_file():  # what drift is measured against
            common["RAPPORT_RECOMMEND_DRIFT_REFERENCE_PATH"] = str(catalog / "references.json")
            common["RAPPORT_PROFILE_DRIFT_REFERENCE_PATH"] = str(catalog / "references.json")
        env = service_env(
            name,
            infra=mesh.infra,
            services=mesh.services,
            api_keys=self.api_keys,
            log_level=self.log_level,
            extra=common | self.env.get(name, {}) | dict(extra or {}),
        )
        return service_spec(name, processes.free_port(), env)


@dataclass
class Mesh:
    """Where the started servers answer: ``infra`` (infra_env's keys) and service URLs."""

    infra: dict[str, str] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services.get(name) or self.infra[name]


def start_mesh(
    plan: MeshPlan,
    stack: Stack,
    data_dir: Path,
    *,
    started: Callable[[RunningServer, Literal["infra", "services"]], None] | None = None,
) -> Mesh:
    """Start ``plan`` on ``stack`` (which stops it all); ``started`` sees each server."""
    mesh = Mesh()

    repository = None
    for name in plan.infra:
        if name == "mongo" and plan.external_mongo_url:
            mesh.infra["mongo"] = plan.external_mongo_url
            continue
        if name == "triton":
            repository = (plan.model_repository or default_model_repository()).resolve()
        spec = infra_spec(
            name,
            data_dir,
            model_repository=repository,
            otlp_endpoint=plan.otlp_endpoint,
            otlp_export_delay_ms=plan.otlp_export_delay_ms,
        )
        server = stack.start(spec)
        mesh.infra.update(server.urls)
        if started is not None:
            started(server, "infra")
    if "kafka" in mesh.infra:
        kafka = KafkaSettings(kafka_bootstrap_servers=mesh.infra["kafka"])
        topics = default_topics() if plan.topics is None else list(plan.topics)
        asyncio.run(ensure_topics(kafka, topics))
    return start_services(plan, stack, mesh, started=started)


def start_services(
    plan: MeshPlan,
    stack: Stack,
    mesh: Mesh,
    *,
    started: Callable[[RunningServer, Literal["infra", "services"]], None] | None = None,
) -> Mesh:
    """``plan.services`` in order on ``mesh``'s infrastructure (however it was started)."""
    for service in plan.services:
        server = stack.start(plan.spec(service, mesh))
        mesh.services.update(server.urls)
        if started is not None:
            started(server, "services")
    return mesh


def up(config: StackConfig) -> dict[str, Any]:
    """Start the infrastructure and the installed services; write stack.json."""
    existing = read_stack(config.home)
    if existing and any(processes.is_running(h) for h in handles_of(existing)):
        raise StackError(
            f"a stack is already running ({stack_path(config.home)}); `make down` first"
        )
    if config.with_services:
        check_experiments(config.experiments_file)
    log_dir = config.home / "logs"
    data_dir = config.home / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    stack = Stack(log_dir)
    data: dict[str, Any] = {
        "infra": {},
        "services": {},
        "api_key": generate_key("dev"),
        "experiments": str(config.experiments_file) if config.experiments_file else None,
        "pids": {},
        "processes": {},
    }

    def record(server: RunningServer, section: Literal["infra", "services"]) -> None:
        data[section].update(server.urls)
        data["pids"][server.spec.name] = server.handle.pid
        data["processes"][server.spec.name] = server.handle.to_json()
        write_stack(config.home, data)  # written as we go, so `down` can clean up a failed `up`

    repository = (config.model_repository or default_model_repository()).resolve()
    plan = MeshPlan(
        api_keys=dev_key_env(data["api_key"]),
        infra=INFRA if config.with_triton else INFRA[:3],
        services=services_for(
            installed_services() if config.with_services else (),
            repository if config.with_triton else None,
        ),
        model_repository=config.model_repository,
        external_mongo_url=config.external_mongo_url,
        otlp_endpoint=config.otlp_endpoint,
        otlp_export_delay_ms=config.otlp_export_delay_ms,
        service_env=dict(config.service_env),
        env=experiments_env(config.experiments_file),
    )
    try:
        mesh = start_mesh(plan, stack, data_dir, started=record)
    except BaseException:
        stack.stop_all()
        stack_path(config.home).unlink(missing_ok=True)
        raise
    data["infra"] |= mesh.infra  # an external MongoDB is in the mesh, not recorded
    write_stack(config.home, data)
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
    if "milvus" in infra:
        host, _, port = infra["milvus"].removeprefix("http://").rpartition(":")
        found["milvus"] = (infra["milvus"], partial(servers.probe_tcp, host, int(port)))
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
