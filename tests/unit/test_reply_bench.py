"""bench/respond.py's pure parts: a level's summary, CPU per reply less idle burn,
histogram quantiles between two scrapes, the ratios, and the seeded speakers."""

from __future__ import annotations

import json

import pytest

from bench.respond import (
    DOCUMENTS,
    MeshRun,
    chat_turns,
    compare_ratios,
    cpu_per_reply,
    cpu_spent,
    floor_levels,
    floor_ratios,
    geometric_mean,
    histograms,
    idle_rates,
    latency_between,
    level_summary,
    parse_levels,
    parse_reply,
    speaker_ids,
    view_events,
)
from rapport.profile.domain.facts import extract

pytestmark = pytest.mark.unit

INF = float("inf")


def _page(stage_counts: dict[str, tuple[list[float], float]]) -> str:
    """A Prometheus text page of respond's stage histogram: stage -> (cumulative counts
    for le 0.005, 0.01, 0.05, +Inf, sum in seconds)."""
    name = "rapport_respond_stage_duration_seconds"
    lines = [f"# HELP {name} Time spent in each stage.", f"# TYPE {name} histogram"]
    for stage, (counts, total) in stage_counts.items():
        for le, count in zip(("0.005", "0.01", "0.05", "+Inf"), counts, strict=True):
            lines.append(f'{name}_bucket{{le="{le}",stage="{stage}"}} {count}')
        lines.append(f'{name}_count{{stage="{stage}"}} {counts[-1]}')
        lines.append(f'{name}_sum{{stage="{stage}"}} {total}')
    lines.append("rapport_respond_shed_total 3.0")
    return "\n".join(lines) + "\n"


def test_stage_latency_is_taken_between_two_scrapes_per_stage() -> None:
    name, label = "rapport_respond_stage_duration_seconds", "stage"
    before = histograms(_page({"profile": ([5, 5, 5, 5], 0.01)}), name, label)
    after = histograms(
        _page(
            {
                "profile": ([5, 55, 105, 105], 0.01 + 100 * 0.012),  # 100 new, mean 12 ms
                "knowledge": ([0, 0, 10, 10], 0.2),  # new stage: all 10 are new
                "recall": ([0, 0, 0, 0], 0.0),  # never observed: left out
            }
        ),
        name,
        label,
    )
    assert set(before) == {"profile"}
    assert after["profile"].count == 105
    assert after["profile"].buckets[INF] == 105
    between = latency_between(before, after)
    assert set(between) == {"profile", "knowledge"}
    assert between["profile"]["count"] == 100
    assert between["profile"]["mean_ms"] == 12.0
    assert between["profile"]["p50_ms"] == 10.0  # rank 50 = top of the (5, 10] ms bucket
    assert between["profile"]["p99_ms"] == pytest.approx(49.2)  # 49/50 of (10, 50] ms
    assert between["knowledge"] == {"count": 10, "mean_ms": 20.0, "p50_ms": 30.0, "p99_ms": 49.6}


# ---- CPU per reply ---------------------------------------------------------------------


def test_cpu_spent_follows_each_pid_and_counts_a_new_child_whole() -> None:
    before = {"triton": {10: 5.0, 11: 1.0}, "respond": {20: 2.0}}
    after = {"triton": {10: 6.0, 11: 1.5, 12: 0.25}, "respond": {20: 2.5}, "ingest": {30: 0.1}}
    assert cpu_spent(before, after) == pytest.approx(
        {"triton": 1.75, "respond": 0.5, "ingest": 0.1}
    )


def test_cpu_per_reply_takes_idle_burn_off_before_dividing() -> None:
    spent = {"profile": 1.2, "kafka": 0.5, "respond": 0.8}
    idle = {"profile": 0.01, "kafka": 0.04}  # s/s; respond burns nothing idle
    cpu = cpu_per_reply(spent, 100, 50, idle_per_s=idle, seconds=10.0)
    # profile: (1.2 - 0.1) s over 100 replies; kafka (0.5 - 0.4); respond 0.8
    assert cpu["per_reply"] == pytest.approx({"profile": 11.0, "kafka": 1.0, "respond": 8.0})
    assert cpu["total"] == pytest.approx(20.0)
    assert cpu["per_complete"] == pytest.approx(40.0)  # the same CPU over the 50 complete


def test_cpu_per_reply_is_not_clipped_and_has_no_complete_figure_without_complete() -> None:
    cpu = cpu_per_reply({"kafka": 0.1}, 10, 0, idle_per_s={"kafka": 0.02}, seconds=10.0)
    assert cpu["per_reply"]["kafka"] == pytest.approx(-10.0)
    assert cpu["per_complete"] is None
    assert cpu_per_reply({"x": 1.0}, 0, 0, idle_per_s={}, seconds=1.0)["total"] == 1000.0


def test_idle_rates_are_cpu_seconds_per_second() -> None:
    before = {"kafka": {1: 10.0}, "redis": {2: 1.0}}
    after = {"kafka": {1: 10.5}, "redis": {2: 1.0}}
    assert idle_rates(before, after, 5.0) == {"kafka": 0.1, "redis": 0.0}


# ---- a level ---------------------------------------------------------------------------


def _reply(degraded: list[str], cited: int = 0, recalled: int = 0) -> bytes:
    return json.dumps(
        {
            "reply": "hi",
            "knowledge": [{"doc_id": "d"}] * cited,
            "memory": {"facts": [], "recalled": [{"text": "x"}] * recalled},
            "personalization": {"degraded": degraded},
        }
    ).encode()


def test_parse_reply_reads_respond_and_the_floor_and_survives_garbage() -> None:
    assert parse_reply(_reply(["memory"], cited=2, recalled=1)) == (["memory"], 2, 1)
    assert parse_reply(b'{"reply": "ok", "degraded": []}') == ([], 0, 0)
    assert parse_reply(b"<html>") == (["unparsable"], 0, 0)
    assert parse_reply(b"[1]") == (["unparsable"], 0, 0)


def test_a_level_counts_complete_replies_as_200_with_nothing_degraded() -> None:
    raw = {
        "status": [200, 200, 200, 503, 0, 200],
        "latency_ms": [10.0, 20.0, 30.0, 1.0, 10_000.0, 40.0],
        "degraded": [[], ["knowledge"], ["knowledge", "memory"], [], [], []],
        "knowledge": [3, 0, 0, 0, 0, 1],
        "recalled": [1, 0, 0, 0, 0, 0],
        "elapsed": 2.0,
    }
    row = level_summary(raw, 4)
    assert row["connections"] == 4
    assert row["load"] == "closed, 4 conns"
    assert row["replies"] == row["requests"] == 6
    assert row["complete"] == 2
    assert row["replies_per_s"] == row["requests_per_s"] == 3.0
    assert row["ok_per_s"] == 2.0
    assert row["complete_per_s"] == 1.0
    assert row["complete_share"] == pytest.approx(0.333)
    assert row["statuses"] == {"0": 1, "200": 4, "503": 1}
    assert row["degraded"] == {"knowledge": 2, "memory": 1}
    assert row["complete_p50_ms"] == 25.0  # of 10 and 40 ms only
    assert row["p50_ms"] == 25.0  # of all six
    assert row["with_knowledge"] == 2
    assert row["with_recall"] == 1
    assert level_summary({**raw, "elapsed": 1.0}, 1)["load"] == "closed, 1 conn"


def test_a_level_without_a_complete_reply_has_no_complete_latency() -> None:
    raw = {"status": [503], "latency_ms": [1.0], "degraded": [[]], "elapsed": 1.0}
    row = level_summary(raw, 1)
    assert row["complete"] == 0
    assert row["complete_p99_ms"] is None
    assert row["p99_ms"] == 1.0


# ---- ratios ----------------------------------------------------------------------------


def _run(label: str, rnd: int, complete: dict[int, float]) -> MeshRun:
    rows = [
        {
            "connections": c,
            "complete_per_s": v,
            "replies_per_s": v * 2,
            "cpu_ms_per_complete_reply": 100 / v,
        }
        for c, v in complete.items()
    ]
    return MeshRun(label, rnd, {}, {}, rows, {})


def test_floor_ratios_pair_a_mesh_with_the_floor_of_its_round_and_level() -> None:
    runs = [_run("new", 1, {1: 20.0, 16: 60.0}), _run("new", 2, {1: 30.0, 16: 90.0})]
    floors = [
        {"mesh": "v1", "round": 1, "connections": 1, "replies_per_s": 200.0},
        {"mesh": "v2", "round": 1, "connections": 16, "replies_per_s": 600.0},
        {"mesh": "v2", "round": 2, "connections": 16, "replies_per_s": 450.0},
    ]
    got = {
        (r["round"], r["connections"], r["floor"]): r["ratio"] for r in floor_ratios(runs, floors)
    }
    assert got == {(1, 1, "v1"): 0.1, (1, 16, "v2"): 0.1, (2, 16, "v2"): 0.2}


def test_compare_ratios_are_new_over_base_per_round_with_their_geometric_mean() -> None:
    runs = [
        _run("base", 1, {1: 10.0, 8: 40.0}),
        _run("new", 1, {1: 20.0, 8: 40.0}),
        _run("base", 2, {1: 10.0}),
        _run("new", 2, {1: 80.0}),
    ]
    compared = compare_ratios(runs)
    per = {(p["round"], p["connections"]): p["complete_per_s"] for p in compared["per_round"]}
    assert per == {(1, 1): 2.0, (1, 8): 1.0, (2, 1): 8.0}
    assert compared["geometric_mean"]["1"]["complete_per_s"] == 4.0
    assert compared["geometric_mean"]["1"]["cpu_ms_per_complete_reply"] == 0.25
    assert geometric_mean([]) is None


# ---- options and the seeded speakers ---------------------------------------------------


def test_levels_and_floor_levels() -> None:
    assert parse_levels("16, 1,4,4") == [1, 4, 16]
    assert floor_levels([1, 2, 4, 8, 16, 32], every=False) == [1, 16]
    assert floor_levels([1, 2], every=False) == [1]
    assert floor_levels([2, 4], every=False) == [2]
    assert floor_levels([1, 2, 4], every=True) == [1, 2, 4]


def test_every_speaker_states_two_facts_profile_extracts_and_views_items() -> None:
    speakers = speaker_ids()
    assert len(speakers) == 64
    for index in range(len(speakers)):
        turns = chat_turns(index)
        assert 3 <= len(turns) <= 5
        found = {a.type for t in turns for a in extract(t) if a.type != "language"}
        assert len(found) >= 2, (index, turns, found)
    views = view_events(speakers)
    per_user = {u: sum(1 for v in views if v["user_id"] == u) for u in speakers}
    assert min(per_user.values()) >= 4
    assert len(DOCUMENTS) >= 4
