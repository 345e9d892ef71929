"""The soak's pure parts: RSS growth between two windows, the sparkline, the mix, which
messages memory keeps, error shares, and the options' defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.soak import (
    DURATION_S,
    MIX,
    SPARKS,
    Growth,
    error_counts,
    interleave,
    merge_counts,
    mix_rate,
    newest,
    parse_args,
    rss_growth,
    sparkline,
    timeline,
    verdicts,
    warmup_for,
    window_for,
)

pytestmark = pytest.mark.unit


# ---- growth: median of the last window against the first after the warm-up --------------


def test_growth_compares_the_medians_of_the_first_and_last_windows_after_the_warm_up() -> None:
    # 0-120 s warm-up climbs steeply; then 100 MiB, rising to 105 by the end.
    series = [(float(t), 50.0 + t / 2) for t in range(0, 120, 5)]
    series += [(float(t), 100.0 + 5 * (t - 120) / 480) for t in range(120, 601, 5)]
    growth = rss_growth(series, warmup_s=120, end_s=600, window_s=60)
    assert growth is not None
    assert growth.samples == (12, 13)  # [120, 180) and [540, 600]
    assert growth.first_mib == pytest.approx(100.3, abs=0.05)
    assert growth.last_mib == pytest.approx(104.7, abs=0.05)
    first = 100 + 5 * 27.5 / 480  # the median of 120..175 s: between 145 and 150 s
    last = 100 + 5 * 450 / 480  # the median of 540..600 s: 570 s
    assert growth.growth == pytest.approx((last - first) / first, abs=1e-4)


def test_a_spike_in_a_window_does_not_move_its_median() -> None:
    series = [(float(t), 200.0) for t in range(0, 91, 5)]
    series[-2] = (85.0, 900.0)  # one sample of a garbage-collection peak
    growth = rss_growth(series, warmup_s=30, end_s=90, window_s=20)
    assert growth is not None
    assert growth.growth == 0.0


def test_shrinking_memory_is_negative_growth_and_no_window_means_no_figure() -> None:
    shrinking = [(0.0, 100.0), (10.0, 100.0), (20.0, 80.0), (30.0, 80.0)]
    growth = rss_growth(shrinking, warmup_s=0, end_s=30, window_s=10)
    assert growth is not None
    assert growth.growth == pytest.approx(-0.2)
    assert rss_growth([(0.0, 100.0)], warmup_s=30, end_s=90, window_s=20) is None
    assert rss_growth([], warmup_s=0, end_s=10, window_s=5) is None


def test_the_windows_are_a_minute_or_a_third_of_what_follows_the_warm_up() -> None:
    assert warmup_for(600, None) == 120  # 20% of the duration by default
    assert warmup_for(90, 30) == 30
    assert window_for(600, 120) == 60
    assert window_for(90, 30) == 20  # never overlapping: 30-50 s and 70-90 s
    assert window_for(60, 60) == 0


def test_the_defaults_are_the_ten_minute_soak_and_the_short_run_is_an_option() -> None:
    soak = parse_args([])
    assert (soak.duration_s, soak.warmup_s, soak.window_s) == (DURATION_S, 120, 60)
    assert DURATION_S == 600
    assert soak.load_share == 0.5
    assert soak.rate is None  # the ramp finds the saturation
    short = parse_args(["--duration", "90", "--warmup", "30", "--rate", "12"])
    assert (short.duration_s, short.warmup_s, short.window_s, short.rate) == (90, 30, 20, 12)


# ---- the sparkline ---------------------------------------------------------------------


def test_a_sparkline_runs_from_the_lowest_block_to_the_highest() -> None:
    line = sparkline([float(v) for v in range(8)])
    assert line == SPARKS
    assert sparkline([3.0, 1.0]) == SPARKS[-1] + SPARKS[0]


def test_a_flat_series_is_a_flat_line_and_a_long_one_is_averaged_to_the_width() -> None:
    assert sparkline([512.0] * 10) == SPARKS[0] * 10
    assert sparkline([]) == ""
    long = sparkline([float(v) for v in range(1000)], width=40)
    assert len(long) == 40
    assert long[0] == SPARKS[0]
    assert long[-1] == SPARKS[-1]
    assert list(long) == sorted(long)  # a rising series never steps down


# ---- the mix, memory's newest, errors ----------------------------------------------------


def test_the_mix_cycle_holds_each_kind_as_often_as_its_weight_spread_out() -> None:
    cycle = interleave(MIX)
    assert len(cycle) == sum(MIX.values())
    assert {kind: cycle.count(kind) for kind in MIX} == MIX
    halves = cycle[: len(cycle) // 2], cycle[len(cycle) // 2 :]
    for kind, weight in MIX.items():  # each half has its share, give or take one
        assert all(abs(h.count(kind) - weight / 2) <= 1 for h in halves)


def test_memory_keeps_the_newest_messages_by_time_then_id() -> None:
    t0 = datetime.now(UTC)
    sent = [(f"e{k:03d}", (t0 + timedelta(seconds=k)).isoformat()) for k in range(250)]
    kept = newest(list(reversed(sent)), cap=200)
    assert kept == {f"m-e{k:03d}" for k in range(50, 250)}
    tie = [("b", t0.isoformat()), ("a", t0.isoformat()), ("c", t0.isoformat())]
    assert newest(tie, cap=2) == {"m-b", "m-c"}
    assert newest(sent[:3]) == {"m-e000", "m-e001", "m-e002"}


def test_errors_are_every_answer_outside_2xx_and_every_call_without_one() -> None:
    calls = [
        (0.0, "event", 1.0, 202),
        (0.1, "event", 1.0, 503),
        (0.2, "respond", 9.0, 200),
        (0.3, "respond", 10_000.0, 0),
        (0.4, "respond", 5.0, 429),
        (0.5, "document", 2.0, 202),
    ]
    errors = error_counts(calls)
    assert errors["event"] == {
        "calls": 2,
        "errors": 1,
        "statuses": {"202": 1, "503": 1},
        "share": 0.5,
    }
    assert errors["respond"]["errors"] == 2
    assert errors["respond"]["share"] == pytest.approx(2 / 3, abs=1e-6)
    assert errors["document"]["errors"] == 0


def test_the_timeline_buckets_calls_by_when_they_were_planned() -> None:
    calls = [(t / 10, "event" if t % 2 else "respond", float(t), 202) for t in range(200)]
    lines = timeline(calls, 10.0)
    assert [line["from_s"] for line in lines] == [0.0, 10.0]
    assert [line["ops_per_s"] for line in lines] == [10.0, 10.0]
    assert lines[0]["replies_p50_ms"] == 49.0  # the even ones: 0, 2, ..., 98
    assert all(line["errors"] == 0 for line in lines)


def test_counts_from_several_phases_add_up() -> None:
    target: dict[str, list[int]] = {"u|item_view": [3, 0]}
    merge_counts(target, {"u|item_view": [2, 1], "v|search": [1, 0]})
    assert target == {"u|item_view": [5, 1], "v|search": [1, 0]}


def test_the_mix_rate_is_held_to_the_kind_it_served_least_of() -> None:
    weights = {"event": 10, "respond": 4, "document": 1}  # shares 2/3, 4/15, 1/15
    calls = [(0.0, "event", 1.0, 202)] * 200  # 20 events/s over 10 s: the mix at 30/s
    calls += [(0.0, "respond", 9.0, 200)] * 40 + [(0.0, "respond", 1.0, 503)] * 60
    calls += [(0.0, "document", 2.0, 202)] * 20
    # replies: 4/s served of a 4/15 share: 15 ops/s of the whole mix, whatever was shed
    assert mix_rate(calls, 10.0, weights) == 15.0
    assert mix_rate(calls[:200], 10.0, {"event": 1}) == 20.0


def test_the_verdicts_judge_every_process_every_call_and_every_loss() -> None:
    flat = {"respond": Growth(200.0, 201.0, 0.005, (12, 12))}
    calls = [(float(t), "event", 1.0, 202) for t in range(2000)]
    late = [(0.0, "recall", 210.0, 503)]  # one error in 2,001 calls: 0.05%
    lost = {"events": {"lost": 0}, "documents": {"not_last_version": 0}, "settled_s": 1.0}
    ok = verdicts(flat, error_counts(calls + late), lost, after_warmup=error_counts(calls))
    assert [row["pass"] for row in ok.values()] == [True, True, True]
    assert ok["errors"]["after_warmup"] == "0 of 2000"

    grown = {**flat, "profile": Growth(100.0, 140.0, 0.4, (12, 12)), "redis": None}
    one_lost = {**lost, "events": {"lost": 1}}
    bad = verdicts(grown, error_counts(late * 3 + calls), one_lost, after_warmup={})
    assert [row["pass"] for row in bad.values()] == [False, False, False]
    assert bad["rss_flat"]["worst"] == "profile +40.0%"

    # The local broker's log is in memory: its growth is printed, not judged.
    broker = {**flat, "kafka": Growth(100.0, 140.0, 0.4, (12, 12))}
    judged = verdicts(broker, error_counts(calls), lost, after_warmup=error_counts(calls))
    assert judged["rss_flat"]["pass"]
    assert "kafka" in judged["rss_flat"]["not judged"]
