"""How big each scenario is: the issue's figures, or a quick pass for trying the harness."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    kill_events: int = 100_000  # row 1
    kills: int = 5
    pause_s: float = 10.0  # row 2: how long the broker is stopped
    outage_s: float = 6.0  # rows 3-5: how long Redis, MongoDB or Triton stays dead
    stream_rate: int = 400  # row 4: events/s produced through the MongoDB outage
    poison_events: int = 10_000  # row 7 (1% more on top are poison)
    replay_events: int = 5_000  # row 8
    replay_users: int = 200
    erase_events: int = 400  # row 9
    deadline_requests: int = 20  # row 6: serial replies per dependency and fault
    knowledge_documents: int = 2_000  # row 10: records of documents (versions and deletes)
    drain_timeout_s: float = 240.0

    @classmethod
    def quick(cls) -> Scale:
        return cls(
            kill_events=20_000,
            kills=3,
            pause_s=4.0,
            outage_s=3.0,
            poison_events=2_000,
            replay_events=1_000,
            replay_users=50,
            erase_events=200,
            deadline_requests=8,
            knowledge_documents=400,
            drain_timeout_s=120.0,
        )
