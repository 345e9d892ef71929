"""Respond in LLM mode as a drop-in OpenAI proxy, driven by the official ``openai`` client
and by the OpenAI Agents SDK: tools, parameters, usage, streaming, errors, per-tenant
upstreams.

Real profile (Kafka, MongoDB-wire, Redis) and recommend (no Triton: trending serves);
the only fake is the upstream LLM (``rapport.devstack.fake_llm``), which records what
it is sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionFunctionToolParam
from pydantic import SecretStr

from rapport.common.settings import KafkaSettings
from rapport.devstack.events import read_topic
from rapport.devstack.fake_llm import FINGERPRINT, REJECTION, TOOL_ARGUMENT, FakeLlm
from rapport.devstack.pytest_plugin import serve_app
from rapport.devstack.waiting import eventually
from rapport.profile.app import create_app as create_profile_app
from rapport.profile.settings import ProfileSettings
from rapport.recommend.app import create_app as create_recommend_app
from rapport.respond.app import create_app as create_respond_app
from rapport.respond.settings import RespondSettings
from tests.integration import reply_path

pytestmark = pytest.mark.integration

ACME = "rpk_test_acme-proxy-0123456789abcdef"
GLOBEX = "rpk_test_globex-proxy-0123456789abcd"
CHATBOT = ["respond:invoke", "profiles:read", "recommend:invoke"]
DEFAULT_KEY = "sk-default-upstream"
GLOBEX_KEY = "sk-globex-own-upstream"
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
QUESTION = "what is the weather in Paris?"


def keys_json() -> str:
    return reply_path.keys_json(
        (ACME, "acme", "acme", CHATBOT),
        (GLOBEX, "globex", "globex", CHATBOT),
    )


@dataclass
class Proxy:
    url: str  # respond in LLM mode
    template_url: str  # respond with no upstream
    default_llm: FakeLlm
    globex_llm: FakeLlm
    kafka: KafkaSettings
    events_topic: str

    def client(self, key: str = ACME, url: str | None = None) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=f"{url or self.url}/v1", api_key=key, max_retries=0)

    async def chat_messages_of(self, user: str) -> list[dict[str, Any]]:
        records = await read_topic(self.kafka, self.events_topic, 2)
        values = [json.loads(r.value) for r in records if r.value]
        return [v for v in values if v["type"] == "chat_message" and v["user_id"] == user]


@pytest_asyncio.fixture(scope="module")
async def proxy(
    private_profile: Callable[[str, str], Awaitable[ProfileSettings]],
) -> AsyncIterator[Proxy]:
    profile_settings = await private_profile("respond_proxy", keys_json())
    kafka = KafkaSettings(kafka_bootstrap_servers=profile_settings.kafka_bootstrap_servers)
    default_llm, globex_llm = FakeLlm(), FakeLlm(reply=("Globex ", "model ", "here"))
    async with (
        serve_app(create_profile_app(profile_settings)) as profile_url,
        serve_app(default_llm.app()) as default_url,
        serve_app(globex_llm.app()) as globex_url,
    ):
        trending_only = reply_path.trending_recommend_settings(profile_settings, profile_url)
        async with serve_app(create_recommend_app(trending_only)) as recommend_url:
            globex_upstream = {
                "tenant": "globex",
                "base_url": f"{globex_url}/v1",
                "api_key": GLOBEX_KEY,
                "models": ["globex-large", "globex-small"],
            }
            template_settings = RespondSettings(
                api_keys=keys_json(),
                profile_url=profile_url,
                redis_url=profile_settings.redis_url,
                recommend_url=recommend_url,
                kafka_bootstrap_servers=profile_settings.kafka_bootstrap_servers,
                events_topic=profile_settings.events_topic,
                deadline_ms=500,
            )
            settings = template_settings.model_copy(
                update={
                    "llm_base_url": f"{default_url}/v1",
                    "llm_api_key": SecretStr(DEFAULT_KEY),
                    "llm_models": "gpt-4.1",
                    "llm_timeout_ms": 500,
                    "llm_upstreams": SecretStr(json.dumps([globex_upstream])),
                }
            )
            async with (
                serve_app(create_respond_app(settings)) as url,
                serve_app(create_respond_app(template_settings)) as template_url,
            ):
                yield Proxy(
                    url,
                    template_url,
                    default_llm,
                    globex_llm,
                    kafka,
                    profile_settings.events_topic,
                )


@pytest.fixture(autouse=True)
def _fresh_upstreams(proxy: Proxy) -> None:
    for llm in (proxy.default_llm, proxy.globex_llm):
        llm.mode = "ok"
        llm.requests.clear()


def contexts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m
        for m in body["messages"]
        if m["role"] == "user" and "<rapport-context>" in str(m["content"])
    ]


@dataclass
class Answer:
    content: str | None
    calls: list[tuple[str, str, str]]  # id, name, arguments
    finish: str | None
    extension: dict[str, Any]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_tool_loop_through_the_official_client(proxy: Proxy, stream: bool) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    client = proxy.client()
    operator = {"role": "system", "content": "You are a travel assistant."}
    messages: list[Any] = [operator, {"role": "user", "content": QUESTION}]

    async def turn() -> Answer:
        if not stream:
            done = await client.chat.completions.create(
                model="rapport", messages=messages, tools=[WEATHER_TOOL], user=user
            )
            choice = done.choices[0]
            calls = [
                (c.id, c.function.name, c.function.arguments)
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ]
            extension = (done.model_extra or {})["rapport"]
            return Answer(choice.message.content, calls, choice.finish_reason, extension)
        chunks = await client.chat.completions.create(
            model="rapport", messages=messages, tools=[WEATHER_TOOL], user=user, stream=True
        )
        answer = Answer(None, [], None, {})
        parts: dict[int, list[str]] = {}
        async for chunk in chunks:
            answer.extension = (chunk.model_extra or {}).get("rapport", answer.extension)
            for part in chunk.choices:
                if part.delta.content:
                    answer.content = (answer.content or "") + part.delta.content
                answer.finish = part.finish_reason or answer.finish
                for call in part.delta.tool_calls or []:
                    slot = parts.setdefault(call.index, ["", "", ""])
                    slot[0] += call.id or ""
                    slot[1] += (call.function and call.function.name) or ""
                    slot[2] += (call.function and call.function.arguments) or ""
        answer.calls = [(i, n, a) for i, n, a in parts.values()]
        return answer

    asked = await turn()
    assert asked.finish == "tool_calls"
    assert asked.extension["personalization"]["mode"] == "llm"
    assert asked.calls == [("call_1", "get_weather", json.dumps({"city": TOOL_ARGUMENT}))]
    call_id, _, arguments = asked.calls[0]

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
    ]
    final = await turn()
    assert final.finish == "stop"
    assert final.content == "The tool said: sunny, 21 C"

    first, second = proxy.default_llm.bodies
    for sent in (first, second):
        assert len(contexts(sent)) == 1, "the context goes in once per request"
        assert sent["tools"] == [WEATHER_TOOL]
        assert sent["messages"][1] == operator, "the operator's system message, unaltered"
        assert sent["messages"][2] == contexts(sent)[0], "context after the system messages"
    assert second["messages"][3:] == messages[1:], "the conversation, in order, unchanged"
    assert [r.authorization for r in proxy.default_llm.requests] == [f"Bearer {DEFAULT_KEY}"] * 2

    # A new user turn after the loop: once it is on the topic, so is anything before it.
    await client.chat.completions.create(
        model="rapport", messages=[{"role": "user", "content": "thanks"}], user=user
    )

    async def recorded() -> bool:
        return len(await proxy.chat_messages_of(user)) >= 2

    await eventually(recorded)
    texts = [e["text"] for e in await proxy.chat_messages_of(user)]
    assert texts == [QUESTION, "thanks"], "a tool result sent back is not a new user turn"


async def test_every_parameter_reaches_the_upstream_unchanged(proxy: Proxy) -> None:
    parameters: dict[str, Any] = {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["\n\n", "END"],
        "max_completion_tokens": 77,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 1,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        "service_tier": "default",
        "reasoning_effort": "low",
    }
    client = proxy.client()
    await client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[WEATHER_TOOL],
        user="someone",
        metadata={"session_id": "s-1", "channel": "web"},
        extra_body={"a_vendor_extension": {"keep": [1, 2]}},
        **parameters,
    )
    (sent,) = proxy.default_llm.bodies
    for name, value in {**parameters, "a_vendor_extension": {"keep": [1, 2]}}.items():
        assert sent[name] == value, name
    assert sent["model"] == "gpt-4.1"
    assert "max_tokens" not in sent, "the default applies only when the request sets none"
    assert "user" not in sent, "Rapport's own fields stay here"
    assert "metadata" not in sent

    await client.chat.completions.create(
        model="rapport", messages=[{"role": "user", "content": "hi"}]
    )
    assert proxy.default_llm.bodies[-1]["model"] == "gpt-4o-mini", "a persona's upstream model"
    assert proxy.default_llm.bodies[-1]["max_tokens"] == 400


async def test_usage_fingerprint_and_logprobs_come_back_as_the_upstream_sent_them(
    proxy: Proxy,
) -> None:
    client = proxy.client()
    messages: list[Any] = [{"role": "user", "content": "hello there"}]
    done = await client.chat.completions.create(
        model="rapport", messages=messages, logprobs=True, user="someone"
    )
    expected = proxy.default_llm.usage(proxy.default_llm.bodies[-1], 3)
    assert done.usage is not None
    assert done.usage.model_dump(exclude_none=True) == expected
    assert done.system_fingerprint == FINGERPRINT
    assert done.id.startswith("chatcmpl-fake-")
    assert done.choices[0].logprobs is not None
    assert [t.token for t in done.choices[0].logprobs.content or []] == ["LLM ", "says ", "hi"]

    stream = await client.chat.completions.create(
        model="rapport",
        messages=messages,
        user="someone",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    expected = proxy.default_llm.usage(proxy.default_llm.bodies[-1], 3)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == expected
    assert "rapport" in (chunks[-1].model_extra or {}), "the extension rides on the last chunk"
    assert not any("rapport" in (c.model_extra or {}) for c in chunks[:-1])
    assert [c.choices[0].delta.content for c in chunks if c.choices][1:4] == ["LLM ", "says ", "hi"]
    assert {c.system_fingerprint for c in chunks} == {FINGERPRINT}


async def test_upstream_rejections_reach_the_client_in_openais_shape(proxy: Proxy) -> None:
    proxy.default_llm.mode = "rejected"
    client = proxy.client()
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="rapport",
                messages=[{"role": "user", "content": QUESTION}],
                tools=[WEATHER_TOOL],
                stream=stream,
            )
        assert info.value.status_code == 400
        assert info.value.code == REJECTION["code"]
        assert info.value.param == REJECTION["param"]
        assert info.value.type == "invalid_request_error"
        assert REJECTION["message"] in info.value.message
    # Even a plain conversation: the request itself was refused, a template would hide it.
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="rapport", messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize(("mode", "status"), [("error", 502), ("rate_limited", 502), ("slow", 504)])
async def test_a_failing_upstream_is_an_error_for_tools_and_a_template_otherwise(
    proxy: Proxy, mode: str, status: int
) -> None:
    proxy.default_llm.mode = mode
    proxy.default_llm.slow_s = 1.0  # past llm_timeout_ms (500)
    client = proxy.client()
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.with_raw_response.create(
            model="rapport",
            messages=[{"role": "user", "content": QUESTION}],
            tools=[WEATHER_TOOL],
        )
    assert info.value.status_code == status
    assert "llm" in info.value.response.headers["X-Rapport-Degraded"].split(",")
    assert info.value.type == "api_error"
    assert info.value.code == ("upstream_timeout" if status == 504 else "upstream_failed")

    raw = await client.chat.completions.with_raw_response.create(
        model="rapport", messages=[{"role": "user", "content": "hi"}]
    )
    done = raw.parse()
    assert done.choices[0].message.content, "a plain conversation gets the template"
    assert (done.model_extra or {})["rapport"]["personalization"]["mode"] == "template"
    assert "llm" in raw.headers["X-Rapport-Degraded"].split(",")


async def test_a_stream_that_breaks_raises_in_the_client(proxy: Proxy) -> None:
    proxy.default_llm.mode = "break"
    stream = await proxy.client().chat.completions.create(
        model="rapport", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received: list[str | None] = []

    async def read_all() -> None:
        async for chunk in stream:
            received.extend(c.delta.content for c in chunk.choices)

    with pytest.raises(openai.APIError, match="ended before it finished"):
        await read_all()
    assert "LLM " in received, "what came before the break was passed on"


async def test_rapports_own_errors_have_openais_shape_too(proxy: Proxy) -> None:
    client = proxy.client()
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}]
        )
    assert (missing.value.code, missing.value.type) == ("model_not_found", "not_found_error")
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        await client.chat.completions.create(model="rapport", messages=[])
    assert invalid.value.param == "messages"
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        await proxy.client(key="rpk_test_not-a-key").models.list()
    assert unauthorized.value.type == "authentication_error"
    # No upstream: a request with tools is refused rather than answered from a template.
    with pytest.raises(openai.BadRequestError) as no_model:
        await proxy.client(url=proxy.template_url).chat.completions.create(
            model="rapport", messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER_TOOL]
        )
    assert (no_model.value.code, no_model.value.param) == ("needs_upstream", "tools")


async def test_a_tenant_with_its_own_upstream_uses_only_that(proxy: Proxy) -> None:
    globex, acme = proxy.client(key=GLOBEX), proxy.client()
    models = {m.id for m in (await globex.models.list()).data}
    assert {"globex-large", "globex-small"} <= models
    assert "gpt-4.1" not in models
    assert "gpt-4o-mini" not in models
    assert "globex-large" not in {m.id for m in (await acme.models.list()).data}

    done = await globex.chat.completions.create(
        model="globex-small", messages=[{"role": "user", "content": "hi"}]
    )
    assert done.choices[0].message.content == "Globex model here"
    persona = await globex.chat.completions.create(
        model="rapport", messages=[{"role": "user", "content": "hi"}]
    )
    assert persona.model == "globex-large", "a persona uses the tenant's default model"
    assert [r.authorization for r in proxy.globex_llm.requests] == [f"Bearer {GLOBEX_KEY}"] * 2
    assert proxy.default_llm.requests == [], "nothing of globex's reached the default upstream"

    for client, model in ((acme, "globex-small"), (globex, "gpt-4.1")):
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
    assert proxy.globex_llm.requests[2:] == []
    assert proxy.default_llm.requests == []


async def test_the_openai_agents_sdk_runs_its_tool_loop_through_the_gateway(proxy: Proxy) -> None:
    from agents import (  # noqa: PLC0415 - the SDK sets up tracing on import
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)  # its default exporter would call OpenAI's servers
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"rainy, 12 C in {city}"

    user = f"agent-{uuid.uuid4().hex[:8]}"
    agent = Agent(
        name="travel",
        instructions="You answer travel questions.",
        tools=[get_weather],
        model=OpenAIChatCompletionsModel(model="rapport", openai_client=proxy.client()),
        model_settings=ModelSettings(extra_args={"user": user}),
    )
    result = await Runner.run(agent, QUESTION)
    assert asked == [TOOL_ARGUMENT]
    assert result.final_output == f"The tool said: rainy, 12 C in {TOOL_ARGUMENT}"
    first, second = proxy.default_llm.bodies
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert [m["role"] for m in second["messages"]][-2:] == ["assistant", "tool"]
    assert all(len(contexts(sent)) == 1 for sent in (first, second))
