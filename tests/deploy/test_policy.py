"""Checkov finds nothing in the security checks the chart commits to, on the render with
every optional part switched on."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.deploy.conftest import DeployTools

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "charts" / "rapport" / "examples"
CHECKS = {
    "CKV_K8S_20": "containers do not allow privilege escalation",
    "CKV_K8S_22": "read-only root filesystem",
    "CKV_K8S_23": "no root containers",
    "CKV_K8S_28": "NET_RAW dropped",
    "CKV_K8S_31": "seccomp RuntimeDefault",
    "CKV_K8S_37": "capabilities minimised",
    "CKV_K8S_38": "service account tokens only where needed",
    "CKV_K8S_40": "a high UID",
    "CKV2_K8S_6": "every pod selected by a NetworkPolicy",
}


def test_checkov_passes_every_committed_check_on_the_all_enabled_render(
    deploy: DeployTools, tmp_path: Path
) -> None:
    # The committed example is the fresh render (test_chart checks that), so checkov
    # reads it directly; --skip-download keeps checkov off the network.
    result = deploy.run(
        [
            deploy.tool("checkov"),
            "--file",
            str(EXAMPLES / "all-enabled.yaml"),
            "--framework",
            "kubernetes",
            "--check",
            ",".join(CHECKS),
            "--skip-download",
            "--output",
            "json",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])]
    assert not failed, failed
    assert report["summary"]["parsing_errors"] == 0
    passed = Counter(c["check_id"] for c in report["results"]["passed_checks"])
    # Each check really ran, on every workload (six Deployments and the retrain CronJob;
    # checkov's NetworkPolicy graph check looks at Deployments only, and
    # test_chart checks the CronJob's own policy).
    expected = {**dict.fromkeys(CHECKS, 7), "CKV2_K8S_6": 6}
    assert {check: passed[check] for check in CHECKS} == expected
