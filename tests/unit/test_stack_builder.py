"""The local stack's one builder: what each service is started with (no server runs)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from rapport.common.auth import ApiKeyStore
from rapport.devstack import processes
from rapport.devstack.processes import ProcessHandle
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
        otlp_export_delay_ms=200,
        service_env={"A": "every", "B": "every"},
        env={"recommend": {"B": "own", "C": "own"}},
    )
    spec = plan.spec("recommend", Mesh(infra=INFRA), {"C": "call"})
    assert (spec.env["A"], spec.env["B"], spec.env["C"]) == ("every", "own", "call")
    assert spec.env["RAPPORT_RECOMMEND_CATALOG_PATH"] == str(tmp_path / "catalog.json")
    assert spec.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert spec.env["OTEL_BSP_SCHEDULE_DELAY"] == "200"
    assert spec.argv[0].endswith("rapport-recommend")


def test_cpu_seconds_counts_a_process_and_its_live_children() -> None:
    """What the benches' per-process CPU table adds up (Triton counts with its stubs)."""
    me = psutil.Process()
    handle = ProcessHandle("me", me.pid, processes.start_time(me.pid), (), "")
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        spinner = psutil.Process(child.pid)
        spent = wait_for(lambda: sum(spinner.cpu_times()[:2]), at_least=0.05)
        own = sum(me.cpu_times()[:2])
        assert processes.cpu_seconds(handle) >= own + spent
    finally:
        child.kill()
        child.wait(timeout=10)
    reused = ProcessHandle("reused", me.pid, processes.start_time(me.pid) - 100, (), "")
    assert processes.cpu_seconds(reused) == 0.0, "a PID that is not ours counts nothing"


def wait_for(read: Callable[[], float], *, at_least: float, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while (value := read()) < at_least:
        assert time.monotonic() < deadline, f"still {value} after {timeout_s} s"
        time.sleep(0.01)
    return value


def test_a_handle_matches_its_process_on_a_clock_that_a_wall_clock_step_does_not_move() -> None:
    """psutil's create_time adds /proc/stat's boot time, which a clock step moves; a handle
    that stopped matching would leave its process running when the stack stops."""
    me = psutil.Process()
    started = processes.start_time(me.pid)
    assert processes.is_running(ProcessHandle("me", me.pid, started, (), ""))
    if Path("/proc/self/stat").is_file():
        assert started < 1e8, "seconds since boot, not since the epoch"
        assert abs(started - (me.create_time() - psutil.boot_time())) < 0.05
    assert not processes.is_running(ProcessHandle("me", me.pid, started + 1, (), ""))
