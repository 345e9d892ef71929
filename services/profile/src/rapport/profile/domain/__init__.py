"""Profile state and how one event changes it: pure logic, no I/O.

- :mod:`.state`: a user's profile as stored, and the rules over it;
- :mod:`.reducer`: :func:`apply`, one event into a profile, in event time and
  exactly once in effect;
- :mod:`.trending`: a tenant's trending items, from its users' recent items;
- :mod:`.views`: what the API answers, derived from the state;
- :mod:`.memory`, :mod:`.facts`, :mod:`.pii`: what chat messages say about a user.
"""

from rapport.profile.domain.reducer import Outcome, already_applied, apply
from rapport.profile.domain.state import Profile, Rules, Session
from rapport.profile.domain.trending import TrendingPool, trending
from rapport.profile.domain.views import (
    ConsentAccepted,
    arm_totals,
    cold_start,
    segments,
    trending_view,
    view,
)

__all__ = [
    "ConsentAccepted",
    "Outcome",
    "Profile",
    "Rules",
    "Session",
    "TrendingPool",
    "already_applied",
    "apply",
    "arm_totals",
    "cold_start",
    "segments",
    "trending",
    "trending_view",
    "view",
]
