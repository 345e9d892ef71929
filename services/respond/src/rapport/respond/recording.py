"""What a reply leaves behind: the turn's ``chat_message`` event, and the reply's count.

The event is handed to the Kafka producer once the fan-out is done, for two reasons:
consent must be known before anything is recorded, and the intent and sentiment that
the profile's session keeps exist only once recommend has answered. With memory on it
carries the message's vector, so profile remembers the message without encoding it
again. The reply does not wait for the broker's acknowledgement (it does not depend on
it): acknowledgements and failures are counted when they come.

Opted-out users' messages are not recorded. When their profile could not be read (down,
or late), consent is unknown here: the message is recorded and the profile service,
which enforces consent where events are applied, drops it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cachetools import TTLCache

from rapport.common.vectors import MessageVector
from rapport.respond import domain
from rapport.respond.adapters.recorder import EventRecorder, RecorderUnavailable
from rapport.respond.experiments import Enrolment
from rapport.respond.fanout import Gathered, Turn
from rapport.respond.metrics import RespondMetrics

# profile keeps a user's first exposure only: one acknowledged exposure per user and
# experiment is enough for a while, and the rest would only load the stream.
EXPOSURES_REMEMBERED = 100_000
EXPOSURE_RESEND_S = 600


@dataclass
class Recording:
    recorder: EventRecorder
    metrics: RespondMetrics
    memory: bool  # the event carries the message's vector, for memory
    acknowledged: TTLCache[tuple[str, str, str], bool] = field(
        default_factory=lambda: TTLCache(EXPOSURES_REMEMBERED, EXPOSURE_RESEND_S)
    )

    def exposures(self, turn: Turn, tenant: str, exposed: list[Enrolment]) -> None:
        """An ``exposure`` event per experiment whose variant changed this reply, unless
        one was acknowledged for this user lately; the reply does not wait for them."""
        if turn.user_id is None:
            return
        for enrolment in exposed:
            name, variant = enrolment.experiment.name, enrolment.variant.name
            self.metrics.experiment_exposures.labels(name, variant).inc()
            key = (tenant, turn.user_id, name)
            if key in self.acknowledged:
                continue
            try:
                task = self.recorder.record_exposure(
                    tenant=tenant,
                    user_id=turn.user_id,
                    session_id=turn.session_id,
                    experiment=name,
                    variant=variant,
                )
            except RecorderUnavailable:
                self.metrics.events.labels("failed").inc()
                continue

            def sent(task: asyncio.Task[None], key: tuple[str, str, str] = key) -> None:
                if not task.cancelled() and task.exception() is None:
                    self.acknowledged[key] = True

            task.add_done_callback(sent)

    def chat_message(self, turn: Turn, tenant: str, gathered: Gathered) -> None:
        """The user's message as an event, unless they opted out (or there is no user)."""
        if turn.user_id is None:
            return
        if not gathered.personalized:
            self.metrics.events.labels("skipped_consent").inc()
            return
        if turn.record:
            self._record(turn, turn.user_id, tenant, gathered)

    def replied(self, endpoint: str, mode: str, tone: str) -> None:
        self.metrics.replies.labels(endpoint, mode, tone).inc()

    def _record(self, turn: Turn, user_id: str, tenant: str, gathered: Gathered) -> None:
        """Hand the chat message to the producer; the reply does not wait for the broker.

        The reply never depends on the event, so the acknowledgement (acks=all) is
        counted when it comes (``rapport_respond_events_total``), off the request path.
        Only a producer that cannot take the record (no broker, too much waiting)
        degrades the reply's ``event`` part.
        """
        message = gathered.message
        vector: MessageVector | None = None
        if message is not None and self.memory:
            vector = message.vector
        attributes: dict[str, str | float] = {}
        if message is not None:
            attributes["intent"] = message.intent
            signed = domain.signed_sentiment(message.sentiment, message.sentiment_score)
            if signed is not None:
                attributes["sentiment"] = round(signed, 4)
        if turn.channel:
            attributes["channel"] = turn.channel
        with self.metrics.stage("event"):
            try:
                task = self.recorder.record(
                    tenant=tenant,
                    user_id=user_id,
                    session_id=turn.session_id,
                    text=turn.message,
                    attributes=attributes,
                    vector=vector,
                )
            except RecorderUnavailable:
                self.metrics.events.labels("failed").inc()
                gathered.degrade("event", self.metrics)
                return
        task.add_done_callback(self._count_event)

    def _count_event(self, task: asyncio.Task[None]) -> None:
        failed = task.cancelled() or task.exception() is not None
        self.metrics.events.labels("failed" if failed else "acknowledged").inc()
