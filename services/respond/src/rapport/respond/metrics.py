"""respond's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics

RESPOND_STAGE_DURATION = "rapport_respond_stage_duration_seconds"
RESPOND_DEGRADED = "rapport_respond_degraded"
RESPOND_REPLIES = "rapport_respond_replies"
RESPOND_EVENTS = "rapport_respond_events"
RESPOND_SHED = "rapport_respond_shed"
RESPOND_IN_FLIGHT = "rapport_respond_in_flight"
RESPOND_PROFILE_FALLBACKS = "rapport_respond_profile_fallbacks"


@dataclass
class RespondMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.stage_duration = Histogram(
            RESPOND_STAGE_DURATION,
            "Time spent in each stage of a reply: profile, recommend, knowledge, recall (scored "
            "here), memory (profile's recall API), event, assemble, llm.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.degraded = Counter(
            RESPOND_DEGRADED,
            "Replies that went without a part (profile, recommendations, ranking, intent, "
            "sentiment, event, llm), by part.",
            ["part"],
            registry=self.registry,
        )
        self.replies = Counter(
            RESPOND_REPLIES,
            "Replies by endpoint, mode (template, llm) and tone.",
            ["endpoint", "mode", "tone"],
            registry=self.registry,
        )
        self.events = Counter(
            RESPOND_EVENTS,
            "chat_message events by outcome: acknowledged, failed, skipped_consent.",
            ["outcome"],
            registry=self.registry,
        )
        self.shed = Counter(
            RESPOND_SHED,
            "Replies answered without the fan-out because no place under the admission limit "
            "freed while their budget allowed one.",
            registry=self.registry,
        )
        self.profile_fallbacks = Counter(
            RESPOND_PROFILE_FALLBACKS,
            "Profile reads that went to the profile service's API instead of the view it "
            "publishes in Redis, by reason (not_published, redis_error, unreadable).",
            ["reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            RESPOND_IN_FLIGHT,
            "Fan-outs (profile and recommend calls) running now.",
            registry=self.registry,
        )
        self.admission_waiting = Gauge(
            "rapport_respond_admission_waiting",
            "Replies waiting for a fan-out place now (past the admission limit).",
            registry=self.registry,
        )
        self.admission_limit = Gauge(
            "rapport_respond_admission_limit",
            "Fan-outs one process admits at once now (follows their latency, AIMD).",
            registry=self.registry,
        )
        self.experiment_assignments = Counter(
            "rapport_respond_experiment_assignments",
            "Replies to a user enrolled in an experiment, by experiment and variant.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.experiment_exposures = Counter(
            "rapport_respond_experiment_exposures",
            "Replies whose experiment variant changed what was served (exposures), by "
            "experiment and variant.",
            ["experiment", "variant"],
            registry=self.registry,
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times one stage of a reply, whether it succeeds or raises."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_duration.labels(name).observe(time.perf_counter() - started)
