from __future__ import annotations

import pytest

from rapport.devstack.scrape import sample_sum

pytestmark = pytest.mark.unit

PAGE = """# HELP rapport_profile_events_total Events by outcome.
# TYPE rapport_profile_events_total counter
rapport_profile_events_total{outcome="applied"} 12.0
rapport_profile_events_total{outcome="duplicate"} 3.0
rapport_profile_events_total{outcome="say \\"hi\\", } 1"} 1.0
# TYPE rapport_respond_shed_total counter
rapport_respond_shed_total 8.0
# TYPE rapport_respond_stage_duration_seconds histogram
rapport_respond_stage_duration_seconds_bucket{stage="llm",le="0.005"} 1.0
rapport_respond_stage_duration_seconds_count{stage="llm"} 2.0
rapport_respond_stage_duration_seconds_sum{stage="llm"} 0.25
"""


def test_samples_are_summed_by_name_and_labels() -> None:
    assert sample_sum(PAGE, "rapport_profile_events_total") == 16.0
    assert sample_sum(PAGE, "rapport_profile_events_total", outcome="applied") == 12.0
    assert sample_sum(PAGE, "rapport_profile_events_total", outcome='say "hi", } 1') == 1.0
    assert sample_sum(PAGE, "rapport_respond_shed_total") == 8.0
    assert sample_sum(PAGE, "rapport_respond_stage_duration_seconds_sum", stage="llm") == 0.25
    assert sample_sum(PAGE, "rapport_respond_stage_duration_seconds_count", stage="x") == 0.0
    assert sample_sum(PAGE, "not_exported") == 0.0
