"""Schemathesis over every service's published OpenAPI, against one mesh on the real servers.

ingest, profile, knowledge, recommend and respond (from templates, and in LLM mode on the
fake upstream) run in process over real HTTP, as ``make up`` wires them: ingest feeds
profile's and knowledge's topics, respond reads profile, recommend (Triton), knowledge
(Milvus) and memory. Every generated request, valid or not, must get a documented status
(never a 5xx) with a body and headers that match the schema: schemathesis's checks, all
of them but where a docstring below says why a narrower one replaces one.

The servers run on an event loop of their own thread: schemathesis calls synchronously,
so the test's thread blocks while a request is in flight. Each target counts the cases it
tried; the run's summary prints them.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from schemathesis.checks import CheckContext, CheckFunction
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from rapport.common.kafka import TopicSpec, ensure_topics
from rapport.common.settings import KafkaSettings
from rapport.devstack.events import wait_committed
from rapport.devstack.fake_llm import FakeLlm
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.servers import RunningServer
from rapport.devstack.waiting import eventually
from rapport.ingest.app import create_app as create_ingest_app
from rapport.ingest.settings import IngestSettings
from rapport.knowledge.app import create_app as create_knowledge_app
from rapport.knowledge.settings import KnowledgeSettings
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.settings import ProfileSettings
from rapport.respond.domain import DEADLINE_HEADER
from tests.integration import reply_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # schemathesis's own strategies draw from `random`; nothing here can change that.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

T = TypeVar("T")
PrivateProfile = Callable[[str, str], Awaitable[ProfileSettings]]
KEY = "rpk_test_schemathesis-0123456789abcdef"
AUTHORIZATION = {"Authorization": f"Bearer {KEY}"}
SCOPES = [
    "events:write",
    "knowledge:write",
    "knowledge:read",
    "profiles:read",
    "profiles:write",
    "recommend:invoke",
    "respond:invoke",
]
START_S = 120.0  # Milvus collections and Triton's first calls, on a loaded 2-core machine


# What a schema-valid request may still be refused for (422 naming these fields only), by
# operation: rules that JSON Schema cannot express, each in its operation's description.
SERVER_RULES: dict[str, set[str]] = {
    "POST /v1/events": {"occurred_at"},  # at most max_future_skew_s ahead of the server's clock
    "POST /v1/knowledge": {"doc_id"},  # one version of a document per request
    # the deadline's maximum is a setting (RAPPORT_RESPOND_MAX_DEADLINE_MS)
    "POST /v1/respond": {DEADLINE_HEADER},
    # and a user message with text, beside the deadline
    "POST /v1/chat/completions": {DEADLINE_HEADER, "messages"},
}


def valid_data_is_refused_only_by_server_rules(
    ctx: CheckContext, response: Response, case: schemathesis.Case[Any]
) -> bool | None:
    """schemathesis's positive_data_acceptance, except for SERVER_RULES.

    Those rules depend on the server's clock or settings, or compare items of a batch,
    which JSON Schema cannot say: a schema-valid request may be refused (422) for them,
    and for nothing else.
    """
    allowed = SERVER_RULES.get(case.operation.label)
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if allowed and positive and response.status_code == 422:
        fields = {error["field"] for error in response.json()["errors"]}
        assert fields <= allowed, response.json()
        return None
    return positive_data_acceptance(ctx, response, case)


def undeclared_methods_are_refused(
    ctx: CheckContext, response: Response, case: schemathesis.Case[Any]
) -> bool | None:
    """schemathesis's unsupported_method, except where the URL with that method is another
    documented operation.

    ``DELETE /v1/profiles/u/memory/recall`` (recall has no DELETE) is also
    ``DELETE /v1/profiles/{user_id}/memory/{memory_id}`` with the id ``recall``, which
    that operation refuses (422: not a memory id's pattern), as its document says.
    """
    method = (response.request.method or "").lower()
    path = urlsplit(str(response.request.url)).path
    for result in case.operation.schema.get_all_operations():
        operation = result.ok()
        template = "[^/]+".join(map(re.escape, re.split(r"\{[^/}]+\}", operation.path)))
        if operation.method.lower() == method and re.fullmatch(template, path):
            return None
    return unsupported_method(ctx, response, case)


def _valid_as_sent(case: schemathesis.Case[Any]) -> bool:
    """The body as sent is valid against the operation's whole published document."""
    document: dict[str, Any] = case.operation.schema.raw_schema
    operation = document["paths"][case.operation.path][case.operation.method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    body_schema = content.get("application/json", {}).get("schema")
    if body_schema is None or case.body is None:
        return False
    # The document's components beside the body's schema: its "#/components/..." resolve.
    schema = {**body_schema, "components": document.get("components", {})}
    return bool(Draft202012Validator(schema).is_valid(case.body))


def invalid_data_is_refused_unless_valid_as_sent(
    ctx: CheckContext, response: Response, case: schemathesis.Case[Any]
) -> bool | None:
    """schemathesis's negative_data_rejection, except when what was sent is valid after all.

    Two things here turn a negative case into a valid request on the wire: every call
    sends the test's key, replacing a mutated or removed ``Authorization``; and a mutation
    inside one branch of a discriminated union can land on another branch's valid value
    (an ``add_to_cart`` event made "invalid" as a page view is a valid item event). When
    the only negative parts are the body and that header, and the body as sent is valid
    against the whole document (jsonschema), accepting it is right.
    """
    meta = case.meta
    if meta is not None and meta.generation.mode.is_negative and response.status_code < 300:
        negative = {where for where, part in meta.components.items() if part.mode.is_negative}
        declared_headers = [p for p in case.operation.headers if p.name != "Authorization"]
        only_ours = negative <= {ParameterLocation.BODY, ParameterLocation.HEADER}
        if only_ours and not declared_headers and _valid_as_sent(case):
            return None
    return negative_data_rejection(ctx, response, case)


EXCLUDED: list[CheckFunction] = [
    positive_data_acceptance,
    unsupported_method,
    negative_data_rejection,
]
ADDITIONAL: list[CheckFunction] = [
    valid_data_is_refused_only_by_server_rules,
    undeclared_methods_are_refused,
    invalid_data_is_refused_unless_valid_as_sent,
]


@dataclass
class Target:
    """One service under fuzzing: its schema, and how many cases it was tried with."""

    name: str
    schema: schemathesis.BaseSchema
    cases: int = 0
    stateful_steps: int = 0

    @property
    def operations(self) -> int:
        return sum(1 for _ in self.schema.get_all_operations())

    def summary(self) -> str:
        stateful = f", {self.stateful_steps} stateful steps" if self.stateful_steps else ""
        tried = f"{self.cases} cases over {self.operations} operations{stateful}"
        return f"schemathesis {self.name}: {tried}"

    def check(self, case: schemathesis.Case[Any]) -> None:
        self.cases += 1
        case.call_and_validate(
            headers=AUTHORIZATION, excluded_checks=EXCLUDED, additional_checks=ADDITIONAL
        )


class LoopThread:
    """An event loop running in a thread of its own, for servers that must keep answering
    while the test's thread waits on them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-mesh")

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(START_S)

    @contextmanager
    def running(self) -> Iterator[LoopThread]:
        self.thread.start()
        try:
            yield self
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


@dataclass(frozen=True)
class Mesh:
    urls: dict[str, str]  # each target's base URL; respond-llm is respond in LLM mode
    profile: ProfileSettings
    knowledge: KnowledgeSettings
    targets: dict[str, Target] = field(default_factory=dict)

    def target(self, name: str) -> Target:
        """The service under fuzzing, its document as the running app publishes it."""
        if name not in self.targets:
            self.targets[name] = Target(name, from_url(f"{self.urls[name]}/openapi.json"))
        return self.targets[name]


async def start_mesh(
    stack: AsyncExitStack,
    private_profile: PrivateProfile,
    milvus: RunningServer,
    triton: RunningServer,
    served_models: Path,
) -> Mesh:
    """Every service on the session's servers, with topics and collections of its own."""
    keys = reply_path.keys_json((KEY, "fuzz", "fuzz", SCOPES))
    suffix = uuid.uuid4().hex[:8]
    base = await private_profile("fuzz", keys)
    kafka = KafkaSettings(kafka_bootstrap_servers=base.kafka_bootstrap_servers)
    profile = base.model_copy(
        update={
            "milvus_uri": milvus.url(),
            "memory_collection": f"fuzz_memory_{suffix}",
        }
    )
    knowledge = KnowledgeSettings(
        api_keys=keys,
        kafka_bootstrap_servers=kafka.kafka_bootstrap_servers,
        triton_grpc_url=triton.url("triton_grpc"),
        milvus_uri=milvus.url(),
        collection=f"fuzz_{suffix}",
        topic=f"t.knowledge.fuzz.{suffix}",
        dlq_topic=f"t.knowledge-dlq.fuzz.{suffix}",
        group_id=f"g.knowledge.fuzz.{suffix}",
    )
    await ensure_topics(
        kafka,
        [
            TopicSpec(knowledge.topic, 2, config=(("cleanup.policy", "compact"),)),
            TopicSpec(knowledge.dlq_topic, 1),
        ],
    )
    ingest = IngestSettings(
        api_keys=keys,
        kafka_bootstrap_servers=kafka.kafka_bootstrap_servers,
        redis_url=profile.redis_url,
        topic=profile.events_topic,
        knowledge_topic=knowledge.topic,
    )
    llm = FakeLlm()
    urls = {
        "ingest": await stack.enter_async_context(serve_app(create_ingest_app(ingest))),
        "profile": await stack.enter_async_context(serve_app(create_profile_app(profile))),
        "knowledge": await stack.enter_async_context(serve_app(create_knowledge_app(knowledge))),
    }
    llm_url = await stack.enter_async_context(serve_app(llm.app()))
    served = await stack.enter_async_context(
        reply_path.serve_reply_path(
            profile,
            urls["profile"],
            triton,
            served_models,
            llm_url=llm_url,
            knowledge_url=urls["knowledge"],
            milvus_uri=milvus.url(),
            knowledge_collection=knowledge.collection,
        )
    )
    urls |= {
        "recommend": served.recommend_url,
        "respond": served.respond_url,
        "respond-llm": served.llm_respond_url,
    }
    for url in urls.values():
        await eventually(partial(_ready, url), timeout_s=START_S)
    return Mesh(urls, profile, knowledge)


async def _ready(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status == 200


@pytest.fixture(scope="module")
def mesh(
    private_profile: PrivateProfile,
    milvus_server: RunningServer,
    models_triton: RunningServer,
    served_models: Path,
    summary_lines: list[str],
) -> Iterator[Mesh]:
    """The mesh for the module; afterwards, the cases each target was tried with."""
    with LoopThread().running() as thread:
        stack = AsyncExitStack()
        try:
            mesh = thread.run(
                start_mesh(stack, private_profile, milvus_server, models_triton, served_models)
            )
            yield mesh
        finally:
            thread.run(stack.aclose())
    for fuzzed in mesh.targets.values():
        summary_lines.append(fuzzed.summary())
    for fuzzed in mesh.targets.values():
        assert fuzzed.cases >= fuzzed.operations, f"{fuzzed.name}: {fuzzed.summary()}"


TARGETS = ["ingest", "profile", "knowledge", "recommend", "respond", "respond-llm"]
# The documents with links (docs/openapi/CHANGES.md 2.1.0; schemathesis infers more).
LINKED = ["ingest", "profile", "knowledge"]


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, mesh: Mesh) -> Target:
    return mesh.target(request.param)


@pytest.fixture(scope="module")
def target_schema(target: Target) -> schemathesis.BaseSchema:
    return target.schema


schema = schemathesis.pytest.from_fixture("target_schema")
# Derandomized: CI sees the same cases every run; widen max_examples locally to explore.
FUZZ = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
STATEFUL = settings(FUZZ, max_examples=10, stateful_step_count=6)


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case: schemathesis.Case[Any], target: Target) -> None:
    target.check(case)


@pytest.mark.parametrize("name", LINKED)
def test_linked_operations_conform(mesh: Mesh, name: str) -> None:
    """Schemathesis's stateful mode: sequences that follow the documents' links (a consent
    then the profile, a search then its document), every step held to the same checks."""
    linked = mesh.target(name)

    class Linked(linked.schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"headers": AUTHORIZATION}

        def validate_response(
            self, response: Response, case: schemathesis.Case[Any], **kwargs: Any
        ) -> None:
            linked.stateful_steps += 1
            case.validate_response(
                response,
                excluded_checks=EXCLUDED,
                additional_checks=ADDITIONAL,
                transport_kwargs=kwargs,
            )

    Linked.run(settings=STATEFUL)


async def test_the_consumers_take_every_record_the_fuzzing_produced(mesh: Mesh) -> None:
    """ingest fed profile's and knowledge's topics (respond too): no record of it may stall
    a consumer (a poison record is dead-lettered, not retried forever)."""
    kafka = KafkaSettings(kafka_bootstrap_servers=mesh.profile.kafka_bootstrap_servers)
    await wait_committed(kafka, mesh.profile.group_id, mesh.profile.events_topic, 2, 60)
    await wait_committed(kafka, mesh.knowledge.group_id, mesh.knowledge.topic, 2, 60)
