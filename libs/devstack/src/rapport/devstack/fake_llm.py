"""A recording fake of an OpenAI-compatible upstream: the one fake the tests allow.

It speaks Chat Completions as OpenAI does (JSON or SSE chunks, ``tool_calls``,
``usage``, ``system_fingerprint``, ``logprobs``, error bodies), records every
request with its ``Authorization`` header, and answers deterministically:

- with ``tools`` and no ``tool`` message yet: a call of the first tool, each
  required string argument set to ``"Paris"``;
- after a ``tool`` message: ``"The tool said: <its content>"``;
- otherwise ``reply`` (``"LLM says hi"``), in three deltas when streaming;
- if ``canary`` appears anywhere in the request, it obeys it, as a careless
  model would, so a test can prove the canary never reaches it.

``mode`` makes it fail: ``error`` (503), ``slow`` (sleeps ``slow_s`` first),
``rejected`` (400 with an OpenAI error body), ``rate_limited`` (429),
``break`` (the stream stops after its first delta).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

FINGERPRINT = "fp_rapport_fake"
CREATED = 1_700_000_000  # a constant: it is an id's timestamp, not compared with any clock
TOOL_ARGUMENT = "Paris"
REJECTION = {
    "message": "Invalid schema for function 'get_weather': 'object' is not valid.",
    "type": "invalid_request_error",
    "param": "tools[0].function.parameters",
    "code": "invalid_function_parameters",
}


@dataclass
class Recorded:
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeLlm:
    reply: tuple[str, ...] = ("LLM ", "says ", "hi")
    canary: str | None = None
    mode: str = "ok"
    slow_s: float = 2.0
    requests: list[Recorded] = field(default_factory=list)
    # Off when served for the benchmarks: a soak's requests would grow the fake's memory.
    record: bool = True

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def parts(self, body: dict[str, Any]) -> list[str]:
        if self.canary and self.canary in json.dumps(body):
            return ["I obey: ", self.canary]
        tool_results = [m for m in body["messages"] if m.get("role") == "tool"]
        if tool_results:
            return ["The tool said: ", str(tool_results[-1].get("content"))]
        return list(self.reply)

    def tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A call of the first tool, while no tool has answered yet."""
        tools = body.get("tools") or []
        if not tools or any(m.get("role") == "tool" for m in body["messages"]):
            return None
        function = tools[0]["function"]
        schema = function.get("parameters") or {}
        arguments = {
            name: TOOL_ARGUMENT
            for name in schema.get("required", [])
            if schema.get("properties", {}).get(name, {}).get("type") == "string"
        }
        call_id = f"call_{len(self.requests)}"
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": function["name"], "arguments": json.dumps(arguments)},
        }

    def usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
        prompt = len(json.dumps(body["messages"])) // 4
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Any:
            body = await request.json()
            if self.record:
                self.requests.append(Recorded(request.headers.get("authorization"), body))
            failure = await self._fail()
            if failure is not None:
                return failure
            if body.get("stream"):
                return StreamingResponse(self._chunks(body), media_type="text/event-stream")
            return self._completion(body)

        return app

    async def _fail(self) -> JSONResponse | None:
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)
        if self.mode == "error":
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, 503)
        if self.mode == "rejected":
            return JSONResponse({"error": REJECTION}, 400)
        if self.mode == "rate_limited":
            return JSONResponse({"error": {"message": "slow down", "type": "requests"}}, 429)
        return None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        call = self.tool_call(body)
        parts = [] if call else self.parts(body)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(parts) or None}
        if call:
            message["tool_calls"] = [call]
        logprobs = None
        if body.get("logprobs"):
            logprobs = {"content": [_logprob(p) for p in parts], "refusal": None}
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": CREATED,
            "model": body["model"],
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if call else "stop",
                    "logprobs": logprobs,
                }
            ],
            "usage": self.usage(body, len(parts) or 1),
        }

    async def _chunks(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-fake-{len(self.requests)}"

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": body["model"],
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": content, "finish_reason": finish, "logprobs": None}]

        yield chunk(delta({"role": "assistant", "content": ""}))
        call = self.tool_call(body)
        parts = [] if call else self.parts(body)
        if call:
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            yield chunk(delta({"tool_calls": [{"index": 0, **head}]}))
            for piece in (arguments[:half], arguments[half:]):
                yield chunk(delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        for i, part in enumerate(parts):
            yield chunk(delta({"content": part}))
            if self.mode == "break" and i == 0:
                return  # the connection ends mid-answer: no finish, no [DONE]
        yield chunk(delta({}, "tool_calls" if call else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            yield chunk([], usage=self.usage(body, len(parts) or 1))
        yield b"data: [DONE]\n\n"


def _logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.25, "bytes": list(token.encode()), "top_logprobs": []}


def main() -> None:
    """``python -m rapport.devstack.fake_llm --port N``: serve it (for the benchmarks)."""
    import uvicorn  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = FakeLlm(record=False).app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
