"""``make chaos``: the fault matrix against real local servers and real service processes.

Each scenario breaks one thing (kills a consumer, pauses the broker, kills
Redis, MongoDB or Triton, slows or cuts a dependency through a TCP fault
proxy, feeds poison, duplicates and replays) and measures what callers and
the stored state show. Every figure is computed from observations; a row
passes only when each of its checks holds. Entry point: ``bench/chaos.py``.
"""

from rapport.chaos.harness import Row
from rapport.chaos.matrix import SCENARIOS, run_matrix, table
from rapport.chaos.scale import Scale

__all__ = ["SCENARIOS", "Row", "Scale", "run_matrix", "table"]
