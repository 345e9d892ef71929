"""The chart, alert and image checks run their tools from .venv-deploy (made by
``make install``): the Helm SDK, kubernetes-validate, checkov and hadolint pin
dependencies of their own, so this virtualenv never imports them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rapport"
DEPLOY_VENV = REPO / ".venv-deploy"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class DeployTools:
    bin_dir: Path

    def tool(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make install` (it creates .venv-deploy)")
        return str(path)

    def run(
        self, argv: Sequence[str], *, timeout: float = 120, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own tools, fixed arguments
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )

    def chart(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """scripts/chart.py under the deploy virtualenv's interpreter."""
        return self.run(
            [self.tool("python"), str(REPO / "scripts" / "chart.py"), *args], timeout=timeout
        )


@pytest.fixture(scope="session")
def deploy() -> DeployTools:
    return DeployTools(DEPLOY_VENV / "bin")


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make promtool` (or `apt-get install prometheus`)")
    return found


@pytest.fixture(scope="session")
def rendered(deploy: DeployTools) -> dict[str, list[Manifest]]:
    """Every value set's manifests (default, dev, prod, all-enabled), rendered by the real Helm."""
    result = deploy.chart("render-json")
    assert result.returncode == 0, result.stdout + result.stderr
    manifests: dict[str, list[Manifest]] = json.loads(result.stdout)
    return manifests
