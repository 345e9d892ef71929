"""`rapport-dev up | status | down` as a user runs them: real processes, real probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INFRA = {"kafka", "mongo", "redis", "milvus", "triton"}
# `rapport-dev up` builds the model repository when it is missing, so Triton serves the
# encoder that knowledge needs: every service starts.
SERVICES = {"ingest", "profile", "recommend", "respond", "knowledge"}


def rapport_dev(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / "rapport-dev"), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        # The user's own RAPPORT_* settings must not leak into the stack under test.
        env={
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RAPPORT_") or k == "RAPPORT_TRITON_VENV"
        },
    )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "rapport"
    up = rapport_dev(home, "up")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        stack = json.loads((home / "stack.json").read_text())
        assert set(stack["infra"]) >= {
            "kafka",
            "mongo",
            "redis",
            "milvus",
            "triton_http",
            "triton_grpc",
        }
        assert set(stack["services"]) == SERVICES
        assert stack["api_key"].startswith("rpk_dev_")
        assert set(stack["pids"]) == INFRA | SERVICES
        for url in stack["services"].values():
            assert url.startswith("http://127.0.0.1:")
        # Everything up started, children included (Triton's backend stubs).
        started = {
            proc.pid
            for pid in stack["pids"].values()
            for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        }

        status = rapport_dev(home, "status", "--json", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert set(rows) == INFRA | SERVICES
        assert all(row["answer"] == "ok" and row["running"] for row in rows.values()), rows

        again = rapport_dev(home, "up", timeout=60)
        assert again.returncode == 1
        assert "already running" in again.stderr
    finally:
        down = rapport_dev(home, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    survivors = [pid for pid in started if _alive(pid)]
    assert survivors == [], f"still running after down: {survivors}"
    assert not (home / "stack.json").exists()
    after = rapport_dev(home, "status", timeout=60)
    assert after.returncode == 1
    assert "no stack" in after.stdout
