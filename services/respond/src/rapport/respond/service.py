"""One reply: gather what is known under the deadline, then assemble it.

Two serial network stages (each outbound call gets what is left of the budget):

1. at the same time:
   - the profile: the view profile publishes in Redis, with the user's recall set,
     in one round trip (profile's HTTP API when nothing is published), with at most
     ``profile_share`` of the budget;
   - recommend, with the message: it reads the same published view itself, and
     answers with the ranked items and what the message means (intent,
     out-of-scope, sentiment and, when knowledge or memory is on, its vector);
2. with that vector, at the same time: knowledge, the passages of the tenant's
   documents that fit the message, and memory's recall, the user's own past
   messages that fit it, scored here against the published recall set (profile's
   recall API when it is not complete); ``knowledge_reserve_ms`` of the budget is
   kept for them. The facts the user stated came with the profile;
3. the ``chat_message`` event, handed to the Kafka producer with the intent
   and sentiment that the profile's session keeps, and the vector, so profile
   remembers the message without encoding it again (the reply does not wait for
   the broker's acknowledgement);
4. the reply: a template, or the upstream LLM with a template fallback.

Both endpoints (``/v1/respond`` and ``/v1/chat/completions``) take this one path,
:meth:`RespondService.answer`; they differ only in how they describe the request
(:class:`Ask`) and format the :class:`Answer`.

A part that is slow or down is left out and named in ``degraded``; the reply
never fails for it. At most the admission limit's fan-outs run at once (it follows
their latency between ``min_in_flight`` and ``max_in_flight``, and backs off when
recommend turns a call away); a reply past it waits for a place while more than
``min_fan_out_ms`` of its budget is left, then is turned away with a 503 and
``Retry-After`` (load shedding): starting it then would only make it late, and
answering it anyway would spend the CPU the admitted replies need (a shed reply that
is still recorded costs about as much as the fan-out it skips).

Opted-out users: profile publishes only their consent flag and version, recommend
ranks without any profile data, and their message is not recorded.
When their profile could not be read (down, or late), consent is unknown here:
the message is recorded and the profile service, which enforces consent where
events are applied, drops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry import trace

from rapport.common.auth import ApiKey
from rapport.common.contracts import (
    FRUSTRATED_SENTIMENT_EWMA,
    ConsentView,
    MemoryFact,
    MessageUnderstanding,
    ProfileView,
    RecalledMessage,
    Recommendations,
)
from rapport.common.http import ServiceCallError
from rapport.common.knowledge import KnowledgeHit
from rapport.common.limits import InFlightLimit
from rapport.common.problems import FieldError, ProblemError
from rapport.common.profiles import ProfileClient
from rapport.common.published import ProfileRead, ProfileReader, nearest
from rapport.common.recommendations import RecommendClient
from rapport.common.vectors import MessageVector
from rapport.respond import domain
from rapport.respond.adapters.knowledge import KnowledgeSearch, KnowledgeUnavailable
from rapport.respond.adapters.llm import (
    ContextFact,
    ContextItem,
    ContextMemory,
    ContextMessage,
    ContextPassage,
    ContextRecalled,
    ContextUser,
    PromptContext,
    Upstream,
    UpstreamFailed,
    UpstreamRejected,
    Upstreams,
    build_messages,
)
from rapport.respond.adapters.recorder import EventRecorder, RecorderUnavailable
from rapport.respond.domain import Deadline, parse_deadline_header
from rapport.respond.metrics import RespondMetrics
from rapport.respond.settings import RespondSettings
from rapport.respond.templates import Persona, Selection, TemplateFile, Tone, choose, fill, render
from rapport.respond.wire import (
    DEGRADED_HEADER,
    KnowledgePassage,
    Memory,
    Personalization,
    Recommendation,
    completion_text,
)

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
MAX_RECOMMEND_MESSAGE = 2000  # recommend's limit
MAX_PROMPT_PASSAGES = 5
MAX_PROMPT_FACTS = 16
MAX_PROMPT_RECALLED = 3
MAX_RECALLED_CHARS = 300  # of one past message, in the prompt
MIN_CALL_S = 0.001  # below this a call cannot succeed; skip it and degrade
# Each dependency: the part a reply lacks without it, and the scope the caller's key needs.
DEPENDENCIES = {
    "profile": ("profile", "profiles:read"),
    "recommend": ("recommendations", "recommend:invoke"),
    "knowledge": ("knowledge", "knowledge:read"),
    "memory": ("memory", "profiles:read"),
}
OVERLOADED = "overloaded"  # recommend's fallback reason when its admission limit sheds
OVERLOADED_RETRY_AFTER_S = "1"
# recommend's names for its degraded parts, as a reply names them.
RECOMMEND_PARTS = {"items": "recommendations", "message": "intent"}
T = TypeVar("T")


@dataclass
class Turn:
    user_id: str | None
    session_id: str | None
    message: str
    channel: str | None = None
    locale: str | None = None
    # False when the conversation does not end with the user (an agent sending back a tool
    # result): the user's message was recorded with the request that brought it.
    record: bool = True


@dataclass
class Gathered:
    """What the fan-out found, and what it could not."""

    profile: ProfileView | None
    personalized: bool
    recommendations: Recommendations | None
    items: list[domain.ShownItem]
    tone: Tone
    degraded: list[str] = field(default_factory=list)
    # A dependency timed out or failed: the fan-out's latency was its, not this box's load.
    dependency_failed: bool = False
    # recommend turned the call away (its own admission limit): this gateway let too many in.
    downstream_overloaded: bool = False
    knowledge: list[KnowledgeHit] = field(default_factory=list)
    facts: list[MemoryFact] = field(default_factory=list)
    recalled: list[RecalledMessage] = field(default_factory=list)

    @classmethod
    def nothing_yet(cls, turn: Turn) -> Gathered:
        """Before the fan-out: personalized when there is a user, until consent says no."""
        return cls(None, turn.user_id is not None, None, [], "neutral")

    @property
    def intent(self) -> str | None:
        message = self.recommendations.message if self.recommendations else None
        return message.intent if message else None

    @property
    def sentiment(self) -> str | None:
        message = self.recommendations.message if self.recommendations else None
        return message.sentiment if message else None

    @property
    def segment(self) -> str | None:
        recs = self.recommendations
        if not self.personalized or recs is None or recs.segment is None:
            return None
        return domain.safe_label(recs.segment.name)

    @property
    def profile_version(self) -> int | None:
        profile = self.profile
        return profile.version if profile is not None and profile.known else None


def _forbidden(service: str, scope: str) -> ProblemError:
    return ProblemError(
        403,
        detail=f"The {service} service refused this key. respond forwards the caller's key, "
        f"so it also needs the `{scope}` scope.",
        slug="forbidden",
    )


@dataclass
class Ask:
    """A reply request, whichever endpoint it came through."""

    turn: Turn
    endpoint: Literal["respond", "chat_completions"]
    model: str | None  # a persona id or, in LLM mode, an upstream model; None: the first persona
    conversation: list[dict[str, Any]]  # the messages as sent, before Rapport's context
    forwarded: dict[str, Any] = field(default_factory=dict)  # sent upstream unchanged
    needs_model: str | None = None  # the request field that only a model can honour
    stream: bool = False
    # OpenAI-compatible: the upstream's completion and its rejections reach the caller as
    # they are. Native: Rapport owns the reply, and any upstream failure is a template reply.
    passthrough: bool = False


def trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@dataclass
class Answer:
    """What :meth:`RespondService.answer` found; exactly one of the three replies is set."""

    gathered: Gathered
    mode: Literal["template", "llm"] = "template"
    reply: str = ""  # a template's text, or (native LLM mode) the model's; else empty
    completion: ChatCompletion | None = None  # passthrough, not streaming
    chunks: AsyncIterator[ChatCompletionChunk] | None = None  # passthrough, streaming

    def recommendations(self) -> list[Recommendation]:
        return [
            Recommendation(item_id=i.item_id, title=i.title, score=i.score, reason=i.reason)
            for i in self.gathered.items
        ]

    def knowledge(self) -> list[KnowledgePassage]:
        return [
            KnowledgePassage(
                doc_id=hit.doc_id,
                title=hit.title,
                snippet=hit.snippet,
                score=hit.score,
                url=hit.url,
            )
            for hit in self.gathered.knowledge
        ]

    def memory(self) -> Memory:
        return Memory(facts=list(self.gathered.facts), recalled=list(self.gathered.recalled))

    def personalization(self) -> Personalization:
        gathered = self.gathered
        return Personalization(
            personalized=gathered.personalized,
            profile_version=gathered.profile_version,
            segment=gathered.segment,
            intent=gathered.intent,
            sentiment=gathered.sentiment,
            tone=gathered.tone,
            mode=self.mode,
            degraded=list(gathered.degraded),
        )

    def extension(self) -> dict[str, Any]:
        """Rapport's part of a completion; OpenAI clients ignore fields they do not know."""
        return {
            "recommendations": [r.model_dump() for r in self.recommendations()],
            "knowledge": [k.model_dump() for k in self.knowledge()],
            "memory": self.memory().model_dump(mode="json"),
            "personalization": self.personalization().model_dump(),
            "trace_id": trace_id(),
        }

    def degraded_headers(self) -> dict[str, str]:
        degraded = self.gathered.degraded
        return {DEGRADED_HEADER: ",".join(degraded)} if degraded else {}


def upstream_problem(exc: UpstreamFailed | UpstreamRejected, gathered: Gathered) -> ProblemError:
    """What the client gets when only the upstream could answer and it did not.

    The upstream's own rejection keeps its status and error; a failure is a 502, or a
    504 when it timed out, with ``llm`` among the degraded parts.
    """
    if isinstance(exc, UpstreamRejected):
        return ProblemError(
            exc.status,
            title="The upstream model rejected the request",
            detail=str(exc.error.get("message") or exc),
            slug="upstream-rejected",
            extra={"error": exc.error},
        )
    status = 504 if exc.timed_out else 502
    return ProblemError(
        status,
        title="The upstream model did not answer",
        detail="This request needs the upstream model (it carries tools, a tool result or a "
        f"structured response format), and the model failed: {exc}",
        slug="upstream-timeout" if exc.timed_out else "upstream-failed",
        headers={DEGRADED_HEADER: ",".join(gathered.degraded)},
    )


@dataclass
class RespondService:
    settings: RespondSettings
    profiles: ProfileClient  # memory's recall API, when the published recall set is not whole
    reader: ProfileReader  # the published view, else profile's API
    recommend: RecommendClient
    recorder: EventRecorder
    templates: TemplateFile
    metrics: RespondMetrics
    admission: InFlightLimit
    upstreams: Upstreams = field(default_factory=lambda: Upstreams(None, {}))
    knowledge: KnowledgeSearch | None = None  # None: replies carry no company knowledge
    started_at: int = field(default_factory=lambda: int(time.time()))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.stage_duration.labels(name).observe(time.perf_counter() - started)

    async def answer(
        self, ask: Ask, *, caller: ApiKey, authorization: str, deadline_ms: str | None
    ) -> Answer:
        """The one path of every reply: model, fan-out, then the upstream or a template."""
        upstream = self.upstreams.for_tenant(caller.tenant)
        persona, upstream_model = self.resolve_model(upstream, ask.model)
        if ask.needs_model and upstream_model is None:
            raise ProblemError(
                400,
                title="No model to answer this request",
                detail=f"`{ask.needs_model}` needs a language model, and this gateway answers "
                "from templates (no upstream is configured for this tenant).",
                slug="needs-upstream",
                errors=[FieldError(field=ask.needs_model, reason="needs an upstream model")],
            )
        gathered = await self.gather(
            ask.turn,
            caller=caller,
            authorization=authorization,
            deadline=self.deadline(deadline_ms),
        )
        answer = Answer(gathered)
        if upstream is not None and upstream_model is not None:
            await self._ask_upstream(ask, answer, upstream, upstream_model, persona)
        if answer.mode == "template":
            answer.reply = self.template_reply(gathered, persona)
        self.metrics.replies.labels(ask.endpoint, answer.mode, gathered.tone).inc()
        return answer

    async def _ask_upstream(
        self, ask: Ask, answer: Answer, upstream: Upstream, model: str, persona: Persona
    ) -> None:
        """Sets the answer's LLM reply, or leaves it a template one (``llm`` degraded)."""
        gathered = answer.gathered
        body = {
            **ask.forwarded,
            "model": model,
            "messages": self.prompt(gathered, ask.turn, persona, ask.conversation),
        }
        try:
            if ask.stream:
                answer.chunks = await self.llm_stream(gathered, upstream, body)
            else:
                answer.completion = await self.llm_complete(gathered, upstream, body)
        except UpstreamRejected as exc:
            if ask.passthrough:
                raise upstream_problem(exc, gathered) from exc
            log.warning(
                "upstream LLM rejected the request; template reply", extra={"error": str(exc)}
            )
            self.degrade(gathered, "llm")
            return
        except UpstreamFailed as exc:
            if ask.needs_model:
                raise upstream_problem(exc, gathered) from exc
            return  # llm is degraded already
        if not ask.passthrough and answer.completion is not None:
            text, answer.completion = completion_text(answer.completion), None
            if text is None:
                self.degrade(gathered, "llm")
                return
            answer.reply = text
        answer.mode = "llm"

    def resolve_model(
        self, upstream: Upstream | None, model: str | None
    ) -> tuple[Persona, str | None]:
        """A persona id, or (LLM mode) one of the tenant's upstream models; unknown is a 404."""
        persona = self.templates.persona(model)
        if persona is not None:
            return persona, upstream.default_model if upstream else None
        if upstream is not None and model in upstream.models:
            return self.templates.personas[0], model
        raise ProblemError(
            404,
            title="Model not found",
            detail=f"The model `{model}` does not exist; `GET /v1/models` lists them.",
            slug="model-not-found",
        )

    def deadline(self, header: str | None) -> Deadline:
        settings = self.settings
        return Deadline.of_ms(
            parse_deadline_header(
                header, default_ms=settings.deadline_ms, max_ms=settings.max_deadline_ms
            )
        )

    def degrade(self, gathered: Gathered, part: str) -> None:
        if part not in gathered.degraded:
            gathered.degraded.append(part)
            self.metrics.degraded.labels(part).inc()

    async def gather(
        self, turn: Turn, *, caller: ApiKey, authorization: str, deadline: Deadline
    ) -> Gathered:
        """The fan-out once a place is free, waiting while the budget still allows one;
        else a 503 (nothing was done, nor recorded: the caller sends it again)."""
        wait_s = deadline.remaining_s(self.settings.min_fan_out_ms / 1000)
        async with self.admission.wait_for_place(wait_s) as ticket:
            if ticket.admitted:
                gathered = await self._fan_out(
                    turn, caller=caller, authorization=authorization, deadline=deadline
                )
                ticket.evidence = not gathered.dependency_failed
                if gathered.downstream_overloaded:
                    self.admission.overloaded()
                return gathered
        self.metrics.shed.inc()
        raise ProblemError(
            503,
            title="Overloaded",
            detail="This gateway is answering as many replies as it can finish within their "
            "deadline, and no place freed in time for this one. Nothing was recorded; send "
            "it again.",
            slug="overloaded",
            headers={"Retry-After": OVERLOADED_RETRY_AFTER_S},
        )

    async def _fan_out(
        self, turn: Turn, *, caller: ApiKey, authorization: str, deadline: Deadline
    ) -> Gathered:
        gathered = Gathered.nothing_yet(turn)
        # respond reads the profile and the knowledge index itself: the caller's key must
        # allow what it would have to ask of profile and knowledge.
        reads = {"profile": turn.user_id is not None, "knowledge": self.knowledge is not None}
        for service, reads_it in reads.items():
            scope = DEPENDENCIES[service][1]
            if reads_it and scope not in caller.scopes:
                raise _forbidden(service, scope)
        # Stage 1: the profile and recommend (which reads the published view itself).
        profile_read = (
            asyncio.create_task(
                self._profile(turn.user_id, caller, authorization, deadline, gathered)
            )
            if turn.user_id is not None
            else None
        )
        try:
            recs = await self._recommend(turn, authorization, deadline, gathered)
            read = await profile_read if profile_read is not None else None
        finally:
            if profile_read is not None and not profile_read.done():
                profile_read.cancel()
        self._take_profile(read, gathered)
        self._take_recommendations(recs, gathered)
        # Stage 2: knowledge and recall, with the message's vector.
        message = recs.message if recs else None
        await asyncio.gather(
            self._knowledge(turn, message, caller.tenant, authorization, deadline, gathered),
            self._recall(
                turn,
                message,
                read,
                authorization=authorization,
                deadline=deadline,
                gathered=gathered,
            ),
        )
        profile = gathered.profile
        gathered.tone = domain.choose_tone(message, profile if gathered.personalized else None)
        if turn.user_id is not None and gathered.personalized:
            await self._record(turn, caller.tenant, gathered)
        elif turn.user_id is not None:
            self.metrics.events.labels("skipped_consent").inc()
        return gathered

    def _take_profile(self, read: ProfileRead | None, gathered: Gathered) -> None:
        if read is None:
            return
        profile = read.view
        if not profile.consent.personalization:
            # Opted out: keep nothing but the flag, before anything else sees the profile.
            profile = ProfileView(
                user_id=profile.user_id,
                known=profile.known,
                version=profile.version,
                consent=ConsentView(personalization=False),
            )
            gathered.personalized = False
        gathered.profile = profile
        if gathered.personalized and self.settings.memory:
            gathered.facts = profile.facts

    def _take_recommendations(self, recs: Recommendations | None, gathered: Gathered) -> None:
        gathered.recommendations = recs
        if recs is None:
            return
        if not recs.personalized:  # recommend read an opted-out user's view
            gathered.personalized = False
        gathered.items = domain.shown_items(recs.items, self.templates.max_recommendations)
        for part in recs.degraded:
            self.degrade(gathered, RECOMMEND_PARTS.get(part, part))
        if recs.fallback:
            self.degrade(gathered, "ranking")
            gathered.downstream_overloaded = recs.fallback_reason == OVERLOADED

    async def _profile(
        self,
        user_id: str,
        caller: ApiKey,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
    ) -> ProfileRead | None:
        timeout = min(
            self.settings.profile_timeout_ms / 1000,
            deadline.budget_s * self.settings.profile_share,
            deadline.remaining_s(self.settings.reserve_ms / 1000),
        )
        return await self._within_budget(
            gathered,
            "profile",
            timeout,
            lambda: self.reader.read(
                caller.tenant,
                user_id,
                authorization=authorization,
                recall=self.settings.memory,
                timeout_s=timeout,
            ),
        )

    async def _recommend(
        self, turn: Turn, authorization: str, deadline: Deadline, gathered: Gathered
    ) -> Recommendations | None:
        """recommend reads the user's published view itself; an anonymous turn gets the
        cold-start default inline."""
        settings = self.settings
        searches = self.knowledge is not None or settings.memory
        reserve_s = settings.reserve_ms / 1000
        reserve_s += settings.knowledge_reserve_ms / 1000 if searches else 0.0
        timeout = min(settings.recommend_timeout_ms / 1000, deadline.remaining_s(reserve_s))
        return await self._within_budget(
            gathered,
            "recommend",
            timeout,
            lambda: self.recommend.recommend(
                user_id=turn.user_id or ANONYMOUS,
                authorization=authorization,
                profile=None
                if turn.user_id is not None
                else ProfileView(user_id=ANONYMOUS, known=False),
                message=turn.message[:MAX_RECOMMEND_MESSAGE].strip() or None,
                k=settings.recommendations,
                vector=searches,
                timeout_s=timeout,
            ),
        )

    async def _knowledge(  # noqa: PLR0917 - the fan-out's common arguments
        self,
        turn: Turn,
        message: MessageUnderstanding | None,
        tenant: str,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
    ) -> None:
        """The passages that fit the message, found with the vector recommend computed.

        Without that vector (recommend or its models were late or down) there is
        nothing to search with: encoding the message again here would cost the
        reply a second encoder call, so ``knowledge`` is degraded instead.
        """
        client = self.knowledge
        if client is None or not turn.message.strip():
            return
        if message is None or message.vector is None:
            self.degrade(gathered, "knowledge")
            return
        vector = message.vector
        settings = self.settings
        timeout = self._search_timeout(settings.knowledge_timeout_ms, deadline)
        hits = await self._within_budget(
            gathered,
            "knowledge",
            timeout,
            lambda: client.search(
                vector,
                tenant=tenant,
                authorization=authorization,
                k=settings.knowledge_passages,
                min_score=settings.knowledge_min_score,
                timeout_s=timeout,
            ),
        )
        gathered.knowledge = hits or []

    async def _recall(
        self,
        turn: Turn,
        message: MessageUnderstanding | None,
        read: ProfileRead | None,
        *,
        authorization: str,
        deadline: Deadline,
        gathered: Gathered,
    ) -> None:
        """The user's own past messages that fit this one, found with the same vector:
        scored here against the recall set profile publishes beside the view, or asked of
        profile's recall API when that set is not whole.

        Only when the profile says memory keeps messages for this user, so a new or
        opted-out user costs nothing.
        """
        profile = gathered.profile
        if not (self.settings.memory and turn.user_id and gathered.personalized):
            return
        if read is None or profile is None or profile.remembered_messages == 0:
            return
        if message is None or message.vector is None:
            self.degrade(gathered, "memory")
            return
        vector, user_id, settings = message.vector, turn.user_id, self.settings
        not_before = read.recall_not_before(datetime.now(UTC))
        if read.recall is not None and not_before is not None:
            with self.stage("recall"):
                try:
                    query = vector.array()
                except ValueError:
                    self.degrade(gathered, "memory")
                    return
                gathered.recalled = nearest(
                    read.recall,
                    query,
                    encoder=vector.model,
                    not_before=not_before,
                    k=settings.memory_recall,
                    min_score=settings.memory_min_score,
                )
            return
        timeout = self._search_timeout(settings.memory_timeout_ms, deadline)
        found = await self._within_budget(
            gathered,
            "memory",
            timeout,
            lambda: self.profiles.recall(
                user_id,
                vector,
                authorization=authorization,
                k=settings.memory_recall,
                min_score=settings.memory_min_score,
                timeout_s=timeout,
            ),
        )
        gathered.recalled = found.recalled if found is not None else []

    def _search_timeout(self, ceiling_ms: int, deadline: Deadline) -> float:
        """A search after recommend: its ceiling, or what is left but the reply's reserve."""
        return min(ceiling_ms / 1000, deadline.remaining_s(self.settings.reserve_ms / 1000))

    async def _within_budget(
        self,
        gathered: Gathered,
        service: Literal["profile", "recommend", "knowledge", "memory"],
        timeout_s: float,
        call: Callable[[], Awaitable[T]],
    ) -> T | None:
        """``call`` within ``timeout_s``; when it fails or is late, its part is degraded.

        A 401 or 403 is the caller's key lacking the scope: that is the caller's error.
        """
        part, scope = DEPENDENCIES[service]
        if timeout_s >= MIN_CALL_S:
            with self.stage(service):
                try:
                    async with asyncio.timeout(timeout_s):
                        return await call()
                except ServiceCallError as exc:
                    if exc.status in (401, 403):
                        raise _forbidden(service, scope) from exc
                    log.warning(f"{service} unavailable", extra={"error": str(exc)[:200]})
                except KnowledgeUnavailable as exc:
                    log.warning(f"{service} unavailable", extra={"error": str(exc)})
                except TimeoutError:
                    log.warning(f"{service} slower than the deadline")
                gathered.dependency_failed = True
        self.degrade(gathered, part)
        return None

    async def _record(self, turn: Turn, tenant: str, gathered: Gathered) -> None:
        """Hand the chat message to the producer; the reply does not wait for the broker.

        The reply never depends on the event, so the acknowledgement (acks=all) is
        counted when it comes (``rapport_respond_events_total``), off the request path.
        Only a producer that cannot take the record (no broker, too much waiting)
        degrades the reply's ``event`` part.
        """
        if turn.user_id is None or not turn.record:
            return
        message = gathered.recommendations.message if gathered.recommendations else None
        vector: MessageVector | None = None
        if message is not None and self.settings.memory:
            vector = message.vector
        attributes: dict[str, str | float] = {}
        if message is not None:
            attributes["intent"] = message.intent
            signed = domain.signed_sentiment(message.sentiment, message.sentiment_score)
            if signed is not None:
                attributes["sentiment"] = round(signed, 4)
        if turn.channel:
            attributes["channel"] = turn.channel
        with self.stage("event"):
            try:
                task = self.recorder.record(
                    tenant=tenant,
                    user_id=turn.user_id,
                    session_id=turn.session_id,
                    text=turn.message,
                    attributes=attributes,
                    vector=vector,
                )
            except RecorderUnavailable:
                self.metrics.events.labels("failed").inc()
                self.degrade(gathered, "event")
                return
        task.add_done_callback(self._count_event)

    def _count_event(self, task: asyncio.Task[None]) -> None:
        failed = task.cancelled() or task.exception() is not None
        self.metrics.events.labels("failed" if failed else "acknowledged").inc()

    # ---- assembly ----------------------------------------------------------------

    def template_reply(self, gathered: Gathered, persona: Persona) -> str:
        with self.stage("assemble"):
            templates = self.templates
            intent = gathered.intent
            profile = gathered.profile if gathered.personalized else None
            interests = domain.interests(profile)
            model_segment = gathered.segment
            best = gathered.knowledge[0] if gathered.knowledge else None
            answers = best is not None and best.score >= self.settings.knowledge_answer_score
            selection = Selection(
                intent=intent,
                domain=templates.domain_of(intent),
                segments=frozenset(domain.segments(profile, model_segment)),
                tone=gathered.tone,
                personalized=gathered.personalized,
                knowledge=answers,
            )
            template = choose(templates, selection)
            items = gathered.items
            values = {
                "greeting": persona.greeting,
                "sign_off": persona.sign_off,
                "intent": domain.readable(intent)
                if intent and intent != domain.OUT_OF_SCOPE
                else "",
                "domain": domain.readable(selection.domain or ""),
                "interests": domain.join_words(interests[:2]),
                "top_interest": interests[0] if interests else "",
                "segment": model_segment or "",
                "recommendations": "\n".join(
                    fill(templates.recommendation_line, {"title": i.title, "reason": i.reason})
                    for i in items
                ),
                "first_title": items[0].title if items else "",
                "first_reason": items[0].reason if items else "",
                "knowledge_title": best.title if best and answers else "",
                "knowledge_snippet": best.snippet if best and answers else "",
                "knowledge_url": (best.url or "") if best and answers else "",
                "memory_note": domain.memory_note(gathered.facts, selection.domain),
            }
            return render(template, values)

    def prompt(
        self,
        gathered: Gathered,
        turn: Turn,
        persona: Persona,
        conversation: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        profile = gathered.profile if gathered.personalized else None
        message = gathered.recommendations.message if gathered.recommendations else None
        session = profile.session if profile else None
        ewma = session.sentiment_ewma if session else None
        mood = None
        if ewma is not None:
            mood = (
                "negative"
                if ewma <= FRUSTRATED_SENTIMENT_EWMA
                else "positive"
                if ewma >= 0.3
                else "neutral"
            )
        context = PromptContext(
            user=ContextUser(
                known=bool(profile and profile.known),
                personalized=gathered.personalized,
                interests=domain.interests(profile, limit=5),
                segments=domain.segments(profile, gathered.segment)[:5],
                session_turns=session.turns if session else None,
                mood=mood,
                language=domain.preferred_language(profile, turn.locale),
            ),
            message=ContextMessage(
                intent=message.intent if message else None,
                out_of_scope=message.out_of_scope if message else None,
                sentiment=message.sentiment if message else None,
            ),
            tone=gathered.tone,
            recommendations=[ContextItem(title=i.title, reason=i.reason) for i in gathered.items],
            knowledge=[
                ContextPassage(doc_id=hit.doc_id, title=hit.title, text=hit.snippet)
                for hit in gathered.knowledge[:MAX_PROMPT_PASSAGES]
            ],
            memory=ContextMemory(
                facts=[
                    ContextFact(type=fact.type, value=fact.value)
                    for fact in gathered.facts[:MAX_PROMPT_FACTS]
                ],
                recalled=[
                    ContextRecalled(
                        said_on=past.occurred_at.date().isoformat(),
                        user_said=past.text[:MAX_RECALLED_CHARS],
                    )
                    for past in gathered.recalled[:MAX_PROMPT_RECALLED]
                ],
            ),
        )
        return build_messages(
            persona=persona, tone=gathered.tone, context=context, conversation=conversation
        )

    async def llm_complete(
        self, gathered: Gathered, upstream: Upstream, body: Mapping[str, Any]
    ) -> ChatCompletion:
        """The upstream's completion; on UpstreamFailed ``llm`` is degraded first."""
        with self.stage("llm"):
            try:
                return await upstream.complete(body)
            except UpstreamFailed as exc:
                log.warning("upstream LLM failed", extra={"error": str(exc)[:200]})
                self.degrade(gathered, "llm")
                raise

    async def llm_stream(
        self, gathered: Gathered, upstream: Upstream, body: Mapping[str, Any]
    ) -> AsyncIterator[ChatCompletionChunk]:
        """The upstream's chunks once the first has arrived; on UpstreamFailed before it,
        ``llm`` is degraded first. A failure later ends the chunks with UpstreamFailed."""
        started = time.perf_counter()
        try:
            first, rest = await upstream.stream(body)
        except UpstreamFailed as exc:
            log.warning("upstream LLM failed", extra={"error": str(exc)[:200]})
            self.degrade(gathered, "llm")
            raise

        async def chunks() -> AsyncIterator[ChatCompletionChunk]:
            yield first
            try:
                async for chunk in rest:
                    yield chunk
            except UpstreamFailed as exc:
                log.warning("upstream LLM stream broke off", extra={"error": str(exc)[:200]})
                self.metrics.degraded.labels("llm").inc()
                raise
            finally:
                self.metrics.stage_duration.labels("llm").observe(time.perf_counter() - started)

        return chunks()
