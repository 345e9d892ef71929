"""No time bombs: events in tests, scenarios and benches are dated from the clock.

Reads decay with age, so an event dated with a literal passes the day it lands and
fails weeks later (issue 18: the chaos scenario's fixed date took cold start to a 500).
A literal date is allowed only where nothing compares it with the clock, in the files
below, each with why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SCANNED = ["tests", "bench", "libs/devstack/src"]
FIXED_DATE = re.compile(r"datetime\(\s*(19|20)\d\d\s*,|[\"'](19|20)\d\d-[01]\d-[0-3]\d[T ]")
CLOCK_FREE = {
    # Parsing and encoding only: RFC 3339 offsets and naive times, no clock involved.
    "tests/unit/test_events.py",
    # The reducer is pure: every test passes the time it reads at explicitly.
    "tests/unit/test_profile_domain.py",
    # This file's own patterns.
    "tests/unit/test_no_fixed_dates.py",
}


def test_nothing_dates_events_with_a_literal() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for folder in SCANNED
        for path in sorted((REPO / folder).rglob("*.py"))
        if str(path.relative_to(REPO)) not in CLOCK_FREE
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if FIXED_DATE.search(line)
    ]
    assert not found, "date these from the clock (or inject one):\n" + "\n".join(found)


def test_the_pattern_finds_what_it_is_for() -> None:
    assert FIXED_DATE.search("T0 = datetime(2026, 11, 1, tzinfo=UTC)")
    assert FIXED_DATE.search('received_at="2000-01-01T00:00:00+00:00"')
    assert not FIXED_DATE.search("now - timedelta(days=60)")
