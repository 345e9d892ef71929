"""One reply: gather what is known under the deadline, record the turn, then answer.

:meth:`RespondService.answer` is the one path of every reply; both endpoints
(``/v1/respond`` and ``/v1/chat/completions``) take it, and differ only in how they
describe the request (:class:`Ask`) and format the :class:`Answer`. It orchestrates:

1. the fan-out (:mod:`rapport.respond.fanout`): the profile, recommend, knowledge and
   memory's recall, under the deadline, each left out (``degraded``) when slow or down;
2. the record (:mod:`rapport.respond.recording`): the turn's ``chat_message`` event,
   handed to the producer without waiting for the broker;
3. the reply: a template, or the upstream LLM with the prompt built by
   :mod:`rapport.respond.prompt`, with a template fallback.

At most the admission limit's fan-outs run at once (it follows their latency between
``min_in_flight`` and ``max_in_flight``, and backs off when recommend turns a call away);
a reply past it waits for a place while more than ``min_fan_out_ms`` of its budget is
left, then is turned away with a 503 and ``Retry-After`` (load shedding): starting it
then would only make it late, and answering it anyway would spend the CPU the admitted
replies need (a shed reply that is still recorded costs about as much as the fan-out it
skips).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry import trace

from rapport.common.auth import ApiKey
from rapport.common.experiments import NO_EXPERIMENTS
from rapport.common.limits import InFlightLimit
from rapport.common.problems import FieldError, ProblemError
from rapport.common.profiles import ProfileClient
from rapport.common.published import ProfileReader
from rapport.respond import domain
from rapport.respond.adapters.knowledge import KnowledgeSearch
from rapport.respond.adapters.llm import Upstream, UpstreamFailed, UpstreamRejected, Upstreams
from rapport.respond.adapters.recommend import RecommendClient
from rapport.respond.adapters.recorder import EventRecorder
from rapport.respond.domain import Deadline, parse_deadline_header
from rapport.respond.experiments import Experiments, Plan
from rapport.respond.fanout import FanOut, Gathered, Turn
from rapport.respond.metrics import RespondMetrics
from rapport.respond.prompt import prompt_messages
from rapport.respond.recording import Recording
from rapport.respond.settings import RespondSettings
from rapport.respond.templates import Persona, Selection, TemplateFile, choose, fill, render
from rapport.respond.wire import (
    DEGRADED_HEADER,
    KnowledgePassage,
    Memory,
    Personalization,
    Recommendation,
    completion_text,
)

log = logging.getLogger(__name__)

OVERLOADED_RETRY_AFTER_S = "1"


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
    plan: Plan = field(default_factory=Plan)
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
            experiments=self.plan.assignments(),
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
    experiments: Experiments = field(default_factory=lambda: Experiments(NO_EXPERIMENTS))
    started_at: int = field(default_factory=lambda: int(time.time()))
    fan_out: FanOut = field(init=False)
    recording: Recording = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.fan_out = FanOut(
            settings,
            reader=self.reader,
            recommend=self.recommend,
            profiles=self.profiles,
            knowledge=self.knowledge,
            metrics=self.metrics,
            max_items=self.templates.max_recommendations,
            experiments=self.experiments,
        )
        self.recording = Recording(self.recorder, self.metrics, memory=settings.memory)

    async def answer(
        self, ask: Ask, *, caller: ApiKey, authorization: str, deadline_ms: str | None
    ) -> Answer:
        """The one path of every reply: model, fan-out and record, then the upstream or a
        template."""
        upstream = self.upstreams.for_tenant(caller.tenant)
        persona, upstream_model = self._resolve_model(upstream, ask.model)
        if ask.needs_model and upstream_model is None:
            raise ProblemError(
                400,
                title="No model to answer this request",
                detail=f"`{ask.needs_model}` needs a language model, and this gateway answers "
                "from templates (no upstream is configured for this tenant).",
                slug="needs-upstream",
                errors=[FieldError(field=ask.needs_model, reason="needs an upstream model")],
            )
        plan = self._plan(ask.turn, caller.tenant)
        gathered = await self._gather(
            ask.turn,
            caller=caller,
            authorization=authorization,
            deadline=self._deadline(deadline_ms),
            plan=plan,
        )
        answer = Answer(gathered, plan)
        if ask.model is None:  # a persona the chatbot names is never an experiment's
            if plan.persona is not None:
                persona = self.templates.persona(plan.persona) or persona
            plan.expose("persona", served_differently=True)
        if upstream is not None and upstream_model is not None:
            await self._ask_upstream(ask, answer, upstream, upstream_model, persona)
        if answer.mode == "template":
            answer.reply = self._template_reply(gathered, persona)
        plan.expose("llm_instructions", served_differently=answer.mode == "llm")
        self.recording.exposures(ask.turn, caller.tenant, plan.exposures())
        self.recording.replied(ask.endpoint, answer.mode, gathered.tone)
        return answer

    def _plan(self, turn: Turn, tenant: str) -> Plan:
        """The experiments whose audience is known before the fan-out (no segment)."""
        plan = Plan()
        if self.experiments and turn.user_id is not None:
            self.experiments.enrol(
                plan,
                tenant=tenant,
                user_id=turn.user_id,
                channel=turn.channel,
                segments=None,
                at=datetime.now(UTC),
            )
        return plan

    def _resolve_model(
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

    def _deadline(self, header: str | None) -> Deadline:
        settings = self.settings
        return Deadline.of_ms(
            parse_deadline_header(
                header, default_ms=settings.deadline_ms, max_ms=settings.max_deadline_ms
            )
        )

    async def _gather(
        self, turn: Turn, *, caller: ApiKey, authorization: str, deadline: Deadline, plan: Plan
    ) -> Gathered:
        """The fan-out and the turn's record once a place is free, waiting while the budget
        still allows one; else a 503 (nothing was done, nor recorded: the caller sends it
        again)."""
        wait_s = deadline.remaining_s(self.settings.min_fan_out_ms / 1000)
        async with self.admission.wait_for_place(wait_s) as ticket:
            if ticket.admitted:
                gathered = await self.fan_out.gather(
                    turn, caller=caller, authorization=authorization, deadline=deadline, plan=plan
                )
                # Inside the place: the record's cost is part of the latency the limit follows.
                self.recording.chat_message(turn, caller.tenant, gathered)
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

    async def _ask_upstream(
        self, ask: Ask, answer: Answer, upstream: Upstream, model: str, persona: Persona
    ) -> None:
        """Sets the answer's LLM reply, or leaves it a template one (``llm`` degraded)."""
        gathered = answer.gathered
        body = {
            **ask.forwarded,
            "model": model,
            "messages": prompt_messages(
                gathered,
                ask.turn,
                persona,
                ask.conversation,
                instructions=answer.plan.llm_instructions,
            ),
        }
        try:
            if ask.stream:
                answer.chunks = await self._llm_stream(gathered, upstream, body)
            else:
                answer.completion = await self._llm_complete(gathered, upstream, body)
        except UpstreamRejected as exc:
            if ask.passthrough:
                raise upstream_problem(exc, gathered) from exc
            log.warning(
                "upstream LLM rejected the request; template reply", extra={"error": str(exc)}
            )
            gathered.degrade("llm", self.metrics)
            return
        except UpstreamFailed as exc:
            if ask.needs_model:
                raise upstream_problem(exc, gathered) from exc
            return  # llm is degraded already
        if not ask.passthrough and answer.completion is not None:
            text, answer.completion = completion_text(answer.completion), None
            if text is None:
                gathered.degrade("llm", self.metrics)
                return
            answer.reply = text
        answer.mode = "llm"

    def _template_reply(self, gathered: Gathered, persona: Persona) -> str:
        """The template that fits what was gathered, filled with it."""
        with self.metrics.stage("assemble"):
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

    async def _llm_complete(
        self, gathered: Gathered, upstream: Upstream, body: Mapping[str, Any]
    ) -> ChatCompletion:
        """The upstream's completion; on UpstreamFailed ``llm`` is degraded first."""
        with self.metrics.stage("llm"):
            try:
                return await upstream.complete(body)
            except UpstreamFailed as exc:
                log.warning("upstream LLM failed", extra={"error": str(exc)[:200]})
                gathered.degrade("llm", self.metrics)
                raise

    async def _llm_stream(
        self, gathered: Gathered, upstream: Upstream, body: Mapping[str, Any]
    ) -> AsyncIterator[ChatCompletionChunk]:
        """The upstream's chunks once the first has arrived; on UpstreamFailed before it,
        ``llm`` is degraded first. A failure later ends the chunks with UpstreamFailed."""
        started = time.perf_counter()
        try:
            first, rest = await upstream.stream(body)
        except UpstreamFailed as exc:
            log.warning("upstream LLM failed", extra={"error": str(exc)[:200]})
            gathered.degrade("llm", self.metrics)
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
