"""The experiments the local mesh runs: the shipped file, how to replace or disable it,
and how respond and profile are pointed at it (no server runs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rapport.common.experiments import Kpi, load_experiments
from rapport.devstack import stack
from rapport.devstack.demo import VIEWER
from rapport.devstack.stack import DEV_TENANT, Mesh, MeshPlan, StackError

pytestmark = pytest.mark.unit

INFRA = {"kafka": "127.0.0.1:1", "mongo": "mongodb://127.0.0.1:2", "redis": "redis://127.0.0.1:3/0"}


def test_the_shipped_file_runs_the_two_demo_experiments_now() -> None:
    shipped = load_experiments(stack.default_experiments())
    tone, memory = shipped.get("tone-empathetic"), shipped.get("memory-off")
    assert tone is not None
    assert memory is not None
    now = datetime.now(UTC)
    assert tone.running(now)
    assert memory.running(now)
    assert [v.changes.tone for v in tone.variants] == [None, "empathetic"]
    assert [v.changes.memory for v in memory.variants] == [None, False]
    assert (tone.primary_kpi, tone.guardrail_kpis) == (Kpi.PURCHASE, [Kpi.NEGATIVE_FEEDBACK])
    assert memory.primary_kpi == Kpi.PURCHASE


def test_the_demo_conversation_is_not_enrolled_and_a_web_shopper_is() -> None:
    """The scripted viewer names no channel: a memory-off variant would empty its memory
    turn. The demo's shoppers reply on the web channel."""
    for experiment in load_experiments(stack.default_experiments()).experiments:
        assert not experiment.audience.admits(DEV_TENANT, None, None), VIEWER
        assert experiment.audience.admits(DEV_TENANT, "web", None)


def test_the_variable_replaces_the_file_or_turns_experiments_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(stack.EXPERIMENTS_VARIABLE, raising=False)
    assert stack.StackConfig.from_env(tmp_path).experiments_file == stack.default_experiments()
    monkeypatch.setenv(stack.EXPERIMENTS_VARIABLE, "off")
    assert stack.StackConfig.from_env(tmp_path).experiments_file is None
    mine = tmp_path / "mine.yaml"
    monkeypatch.setenv(stack.EXPERIMENTS_VARIABLE, str(mine))
    assert stack.StackConfig.from_env(tmp_path).experiments_file == mine.resolve()
    assert stack.experiments_choice("") == stack.default_experiments()
    assert stack.experiments_choice("OFF") is None


def test_respond_and_profile_read_the_file_and_the_others_do_not_see_it() -> None:
    path = stack.default_experiments()
    plan = MeshPlan(api_keys={"RAPPORT_API_KEYS": "[]"}, env=stack.experiments_env(path))
    mesh = Mesh(infra=INFRA)
    assert plan.spec("respond", mesh).env["RAPPORT_RESPOND_EXPERIMENTS_FILE"] == str(path)
    assert plan.spec("profile", mesh).env["RAPPORT_PROFILE_EXPERIMENTS_FILE"] == str(path)
    assert not any("EXPERIMENTS" in k for k in plan.spec("ingest", mesh).env)
    assert stack.experiments_env(None) == {}


def test_a_file_the_services_would_refuse_stops_up_before_anything_starts(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "experiments.yaml"
    broken.write_text("version: 1\nexperiments:\n  - name: Bad Name\n")
    with pytest.raises(StackError, match="cannot be used") as raised:
        stack.check_experiments(broken)
    assert f"{broken}: experiments[0] (Bad Name).name" in str(raised.value)
    stack.check_experiments(None)  # none configured: nothing to check
    stack.check_experiments(stack.default_experiments())
