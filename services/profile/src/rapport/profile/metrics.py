"""profile's own Prometheus metrics, on the shared mechanism (rapport.common.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from rapport.common.drift_monitor import DriftGauges
from rapport.common.experiments import ExperimentFile, ExperimentReport
from rapport.common.metrics import LATENCY_BUCKETS_S, Metrics
from rapport.profile.domain.experiments import Note

PROFILE_EVENTS = "rapport_profile_events"
PROFILE_BATCH_SIZE = "rapport_profile_batch_size"
PROFILE_FRESHNESS = "rapport_profile_freshness_seconds"
PROFILE_CONSUMER_LAG = "rapport_profile_consumer_lag"
PROFILE_STORE_DURATION = "rapport_profile_store_duration_seconds"
PROFILE_WRITE_CONFLICTS = "rapport_profile_write_conflicts"
PROFILE_MEMORY = "rapport_profile_memory"
PROFILE_RECALL_DURATION = "rapport_profile_recall_duration_seconds"
PROFILE_MEMORY_WAITING = "rapport_profile_memory_waiting"
PROFILE_RECALL_FAILURES = "rapport_profile_recall_failures"
EXPERIMENT_EXPOSURES = "rapport_experiment_exposures"
EXPERIMENT_CONVERSIONS = "rapport_experiment_conversions"
EXPERIMENT_REJECTED = "rapport_experiment_exposures_rejected"
EXPERIMENT_USERS = "rapport_experiment_users"
EXPERIMENT_RATE = "rapport_experiment_conversion_rate"
EXPERIMENT_BEAT = "rapport_experiment_probability_to_beat_control"
EXPERIMENT_SRM = "rapport_experiment_srm_p_value"
REJECTIONS = ("unknown_experiment", "not_running", "wrong_variant")


@dataclass
class ProfileMetrics(Metrics):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.events = Counter(
            PROFILE_EVENTS,
            "Events by outcome: applied, duplicate, not_consented, erased, dead_lettered.",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            PROFILE_BATCH_SIZE,
            "Records per processed batch.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        self.freshness = Histogram(
            PROFILE_FRESHNESS,
            "From an event's received_at to its batch being committed.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            PROFILE_CONSUMER_LAG,
            "Records behind the partition's high watermark after the last batch.",
            ["partition"],
            registry=self.registry,
        )
        self.store_duration = Histogram(
            PROFILE_STORE_DURATION,
            "MongoDB and Redis calls of the processor, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.write_conflicts = Counter(
            PROFILE_WRITE_CONFLICTS,
            "Profile writes that lost a version race and were applied again.",
            registry=self.registry,
        )
        self.memory = Counter(
            PROFILE_MEMORY,
            "Memory written by the processor: facts (learned or retracted), remembered "
            "messages, messages_delayed (kept waiting in MongoDB while the vector store was "
            "away); forgotten (by API).",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("facts", "messages", "messages_delayed", "forgotten"):  # at 0 from the start
            self.memory.labels(kind)
        self.memory_waiting = Gauge(
            PROFILE_MEMORY_WAITING,
            "Remembered messages and deletes waiting in MongoDB for the vector store.",
            registry=self.registry,
        )
        self.recall_failures = Counter(
            PROFILE_RECALL_FAILURES,
            "Recalls that failed: the vector store was away or timed out.",
            registry=self.registry,
        )
        self.recall_duration = Histogram(
            PROFILE_RECALL_DURATION,
            "POST /v1/profiles/{user_id}/memory/recall: the profile read and the vector search.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.experiment_exposures = Counter(
            EXPERIMENT_EXPOSURES,
            "Users enrolled at their first exposure, by experiment and variant.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.experiment_conversions = Counter(
            EXPERIMENT_CONVERSIONS,
            "Enrolled users' first outcome of a KPI after their exposure (any delay; the "
            "report applies the attribution window).",
            ["experiment", "variant", "kpi"],
            registry=self.registry,
        )
        self.experiment_rejected = Counter(
            EXPERIMENT_REJECTED,
            "Exposure events not counted: unknown_experiment, not_running, or wrong_variant "
            "(not the variant the user's hash assigns).",
            ["reason"],
            registry=self.registry,
        )
        for reason in REJECTIONS:
            self.experiment_rejected.labels(reason)
        # From the report over all tenants, refreshed by the report loop.
        self.experiment_users = Gauge(
            EXPERIMENT_USERS,
            "Exposed users by experiment and variant.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.experiment_rate = Gauge(
            EXPERIMENT_RATE,
            "Conversion rate of the primary KPI within the attribution window.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.experiment_beat = Gauge(
            EXPERIMENT_BEAT,
            "Probability that the variant beats the control on the primary KPI.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.experiment_srm = Gauge(
            EXPERIMENT_SRM,
            "Sample ratio mismatch: the chi-square p-value of the exposed users' split "
            "against the weights (1 until there are enough users).",
            ["experiment"],
            registry=self.registry,
        )
        # The category mix of incoming item events against the item model's training mix
        # (rapport_drift_*{signal="category_mix"}; only with RAPPORT_PROFILE_DRIFT_REFERENCE_PATH).
        self.drift = DriftGauges(self.registry)

    def declare_experiments(self, experiments: ExperimentFile) -> None:
        """Every experiment's series at 0 from the start, so rate() sees the first one."""
        for experiment in experiments.experiments:
            for variant in experiment.variants:
                self.experiment_exposures.labels(experiment.name, variant.name)
                for kpi in experiment.kpis:
                    self.experiment_conversions.labels(experiment.name, variant.name, kpi)

    def experiment_note(self, note: Note) -> None:
        if note.kind == "exposure":
            self.experiment_exposures.labels(note.experiment, note.variant).inc()
        elif note.kind == "conversion":
            self.experiment_conversions.labels(note.experiment, note.variant, note.detail).inc()
        else:
            self.experiment_rejected.labels(note.detail).inc()

    def experiment_report(self, report: ExperimentReport) -> None:
        primary = report.kpis[0]
        for result in primary.variants:
            labels = (report.name, result.variant)
            self.experiment_users.labels(*labels).set(result.users)
            self.experiment_rate.labels(*labels).set(result.rate or 0.0)
            if result.probability_to_beat_control is not None:
                self.experiment_beat.labels(*labels).set(result.probability_to_beat_control)
        p_value = report.sample_ratio.p_value
        self.experiment_srm.labels(report.name).set(1.0 if p_value is None else p_value)
