"""What one hop costs, piece by piece, against a bare floor.

One leaf answers ``POST /v1/recommendations`` the way recommend does (a
``RecommendationRequest`` in, a real-sized ``Recommendations`` out, no work in
between), built several ways, each in its own uvicorn process (uvloop, httptools), each
loaded in turn by the same aiohttp client in closed loop at 1 and 16 connections. Per
variant: requests/s and the server's CPU per request (psutil). The variants add one
piece at a time, so each row's difference from the one above is that piece's cost:

- ``bare``: FastAPI, ``json.loads`` of the body, pre-serialized bytes back;
- ``pydantic in``: the body parsed into the contract's model;
- ``response_model``: the model returned and declared, as FastAPI validates and
  serializes it again (what the routes do);
- ``skeleton``: ``create_service_app`` (problem handlers, the metrics middleware, the
  OpenTelemetry instrumentation recording nothing: no exporter) with ``response_model``;
- ``+ API key``: the skeleton and ``require_scope`` (a SHA-256 and a dict lookup);
- ``+ traces sampled``: the same with every span recorded and handed to a processor that
  drops it (what a 100% sampler costs before any export).

Also, in-process: pydantic's parse and dump of the same bodies (what msgspec could save
at most). Writes ``bench/results/hop.json``.

    .venv/bin/python -m bench.hop [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Annotated, Any, ClassVar

import aiohttp
import psutil
from fastapi import Depends, FastAPI, Request, Response

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch
from rapport.common.app import create_service_app
from rapport.common.auth import ALL_SCOPES, SCOPE_RECOMMEND_INVOKE, ApiKey, key_entry, require_scope
from rapport.common.contracts import RecommendationRequest, Recommendations
from rapport.common.settings import ServiceSettings
from rapport.devstack import processes
from rapport.devstack.servers import probe_tcp

VARIANTS = ("bare", "pydantic in", "response_model", "skeleton", "+ API key", "+ traces sampled")
KEY = "rpk_hop_0123456789abcdefghijklmnopq"
ITEMS = 3


def recommendations_body() -> dict[str, Any]:
    """A ``Recommendations`` of the size recommend answers a reply with (3 items, the
    message's understanding with its 384-d vector)."""
    return {
        "user_id": "u-1",
        "items": [
            {
                "item_id": str(i),
                "title": "Star Wars (1977)",
                "score": 0.42,
                "why": {"kind": "because_you_watched", "label": "Contact (1997)", "item_id": "9"},
                "categories": ["Action", "Sci-Fi"],
                "slot": "ranked",
            }
            for i in range(ITEMS)
        ],
        "message": {
            "intent": "recommendation_request",
            "confidence": 0.93,
            "out_of_scope": False,
            "sentiment": "neutral",
            "sentiment_score": 0.0,
            "vector": {"model": "encoder:1", "dimension": 384, "data": "A" * 2048},
        },
        "segment": {"id": 3, "name": "sci-fi fans"},
        "models": {"item_scorer": "1", "encoder": "1", "intent_classifier": "1"},
        "fallback": False,
        "fallback_reason": None,
        "degraded": [],
        "personalized": True,
        "profile_version": 12,
        "exploration": None,
    }


REQUEST = {
    "user_id": "u-1",
    "message": "what should I watch tonight?",
    "k": ITEMS,
    "vector": True,
}


def app(variant: str) -> Any:
    """The leaf, built the way ``variant`` says."""
    answer = Recommendations.model_validate(recommendations_body())
    raw = answer.model_dump_json().encode()
    if variant == "bare":
        bare = FastAPI()

        @bare.post("/v1/recommendations")
        async def plain(request: Request) -> Response:
            json.loads(await request.body())
            return Response(raw, media_type="application/json")

        return bare
    if variant in ("pydantic in", "response_model"):
        typed = FastAPI()
        if variant == "pydantic in":

            @typed.post("/v1/recommendations")
            async def parsed(body: RecommendationRequest) -> Response:
                return Response(raw, media_type="application/json")
        else:

            @typed.post("/v1/recommendations", response_model=Recommendations)
            async def declared(body: RecommendationRequest) -> Recommendations:
                return answer

        return typed
    settings = HopSettings(api_keys=keys_json())
    service = create_service_app(settings, title="hop")
    if variant == "skeleton":

        @service.post("/v1/recommendations", response_model=Recommendations)
        async def skeleton(body: RecommendationRequest) -> Recommendations:
            return answer
    else:

        @service.post("/v1/recommendations", response_model=Recommendations)
        async def keyed(body: RecommendationRequest, caller: Caller) -> Recommendations:
            return answer

    if variant == "+ traces sampled":
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: PLC0415

        from rapport.common.telemetry import export_spans  # noqa: PLC0415

        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            export_spans(provider, SpanProcessor())  # records every span, exports none
    return service


Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_RECOMMEND_INVOKE))]


class HopSettings(ServiceSettings):
    service_name: ClassVar[str] = "rapport-hop"


def keys_json() -> str:
    entry = key_entry(KEY, key_id="hop", tenant="hop", scopes=ALL_SCOPES)
    return json.dumps([entry.model_dump(mode="json")])


def serve(variant: str, port: int) -> None:
    import uvicorn  # noqa: PLC0415

    uvicorn.run(
        app(variant),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


async def load(url: str, seconds: float, connections: int) -> int:
    body = json.dumps(REQUEST).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    done = 0
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < stop:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                done += 1

        await asyncio.gather(*(loop() for _ in range(connections)))
    return done


def measure(variant: str, seconds: float, levels: tuple[int, ...]) -> list[dict[str, Any]]:
    port = processes.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    server = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "bench.hop", "--serve", variant, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                asyncio.run(probe_tcp("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/recommendations"
        proc = psutil.Process(server.pid)
        asyncio.run(load(url, 1.0, 4))  # warm-up
        rows = []
        for connections in levels:
            before = proc.cpu_times()
            with Stopwatch() as level:
                done = asyncio.run(load(url, seconds, connections))
            elapsed = level.seconds
            after = proc.cpu_times()
            cpu_s = (after.user + after.system) - (before.user + before.system)
            rows.append(
                {
                    "variant": variant,
                    "connections": connections,
                    "requests_per_s": round(done / elapsed, 1),
                    "server_cpu_ms_per_request": round(cpu_s * 1000 / max(done, 1), 3),
                }
            )
        return rows
    finally:
        server.terminate()
        server.wait(10)


def in_process() -> dict[str, float]:
    """pydantic's own share of a hop: parse and dump of the same bodies, µs each."""
    raw = json.dumps(recommendations_body()).encode()
    request = json.dumps(REQUEST).encode()
    answer = Recommendations.model_validate_json(raw)
    rounds = 5000
    timings = {}
    for name, step in (
        ("parse Recommendations", lambda: Recommendations.model_validate_json(raw)),
        ("dump Recommendations", answer.model_dump_json),
        ("parse RecommendationRequest", lambda: RecommendationRequest.model_validate_json(request)),
        ("json.loads Recommendations", lambda: json.loads(raw)),
    ):
        with Stopwatch() as took:
            for _ in range(rounds):
                step()
        timings[name] = round(took.seconds / rounds * 1e6, 1)
    return timings


def main() -> None:
    options = parser(__doc__, seconds=5.0, seconds_help="per level")
    options.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    options.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    rows = [row for variant in VARIANTS for row in measure(variant, args.seconds, (1, 16))]
    floor = {
        r["connections"]: r["server_cpu_ms_per_request"] for r in rows if r["variant"] == "bare"
    }
    print(f"{'variant':<18} {'conns':>5} {'req/s':>8} {'CPU ms/req':>10} {'x bare':>7}")
    for row in rows:
        ratio = row["server_cpu_ms_per_request"] / max(floor[row["connections"]], 1e-9)
        row["x_bare"] = round(ratio, 2)
        print(
            f"{row['variant']:<18} {row['connections']:>5} {row['requests_per_s']:>8} "
            f"{row['server_cpu_ms_per_request']:>10} {row['x_bare']:>7}"
        )
    micro = in_process()
    print("in process, µs:", micro)
    write_results("hop", rows, seconds=args.seconds, pydantic_us=micro)


if __name__ == "__main__":
    main()
