"""The floor mesh: Rapport's reply path with nothing in it but the hops.

Two shapes, each a gateway answering ``POST /v1/respond`` with a small JSON reply:

- **v1** (the reply graph until issue 13): the gateway reads ``GET /v1/profiles/{id}``
  from one leaf, then ``POST /v1/recommendations`` (the profile inline) to another.
- **v2** (the new reply graph): in stage 1, at the same time, the gateway GETs the
  profile from a real Redis (``redis-server``, a profile-sized value) and POSTs the
  message to leaf A, which GETs the same key from Redis before it answers a
  recommendations-sized body (with the message's vector); in stage 2 it POSTs that
  vector to leaf B, which answers a knowledge-search-sized body.

Same servers (FastAPI on uvicorn, uvloop, httptools), same client (one pooled aiohttp
session; ``redis.asyncio`` as the product uses it), same payload sizes as the real
mesh, same loopback and cores; no stores but Redis, no models, no telemetry, no
validation beyond parsing JSON. What the real mesh serves against this is the share of
the box its own work leaves to the hops.

    python -m bench.floor gateway|profile|recommend --port P [--profile-url U --recommend-url U]
    python -m bench.floor gateway-v2|recommend-v2|knowledge --port P [--redis-url R
        --recommend-url U --knowledge-url U]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
from fastapi import FastAPI, Request, Response

from rapport.devstack import processes
from rapport.devstack.servers import ServerSpec, clean_env, probe_tcp, redis_spec
from rapport.devstack.stack import Stack

JSON = "application/json"
PROFILE_KEY = "floor:profile"  # the one profile-sized value v2 reads from Redis


def leaf_app(body: bytes, method: str, path: str) -> FastAPI:
    app = FastAPI()

    async def answer(request: Request) -> Response:
        await request.body()
        return Response(body, media_type=JSON)

    app.add_api_route(path, answer, methods=[method])
    return app


def gateway_app(profile_url: str, recommend_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as http:
            app.state.http = http
            yield

    app = FastAPI(lifespan=lifespan)

    async def respond(request: Request) -> Response:
        ask = json.loads(await request.body())
        http: aiohttp.ClientSession = request.app.state.http
        async with http.get(f"{profile_url}/v1/profiles/{ask['user_id']}") as answer:
            profile = await answer.json()
        inline = {"user_id": ask["user_id"], "k": 3, "profile": profile, "message": ask["message"]}
        async with http.post(f"{recommend_url}/v1/recommendations", json=inline) as answer:
            recs = await answer.json()
        reply = {"reply": "ok", "recommendations": recs["items"][:3], "degraded": []}
        return Response(json.dumps(reply), media_type=JSON)

    app.add_api_route("/v1/respond", respond, methods=["POST"])
    return app


# ---- v2: the new reply graph (Redis and leaf A at once, then leaf B) ---------------


@asynccontextmanager
async def _redis(app: FastAPI, url: str) -> AsyncIterator[None]:
    from redis.asyncio import Redis  # noqa: PLC0415 - only the v2 servers need it

    redis = Redis.from_url(url)
    try:
        app.state.redis = redis
        yield
    finally:
        await redis.aclose()


def recommend_v2_app(body: bytes, redis_url: str) -> FastAPI:
    """Leaf A: reads the request, GETs the profile from Redis, answers ``body``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _redis(app, redis_url):
            yield

    app = FastAPI(lifespan=lifespan)

    async def answer(request: Request) -> Response:
        await request.body()
        await request.app.state.redis.get(PROFILE_KEY)
        return Response(body, media_type=JSON)

    app.add_api_route("/v1/recommendations", answer, methods=["POST"])
    return app


def gateway_v2_app(redis_url: str, recommend_url: str, knowledge_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as http, _redis(app, redis_url):
            app.state.http = http
            yield

    app = FastAPI(lifespan=lifespan)

    async def recommendations(http: aiohttp.ClientSession, ask: dict[str, Any]) -> Any:
        wanted = {"user_id": ask["user_id"], "k": 3, "message": ask["message"], "vector": True}
        async with http.post(f"{recommend_url}/v1/recommendations", json=wanted) as answer:
            return await answer.json()

    async def respond(request: Request) -> Response:
        ask = json.loads(await request.body())
        http: aiohttp.ClientSession = request.app.state.http
        stored, recs = await asyncio.gather(
            request.app.state.redis.get(PROFILE_KEY), recommendations(http, ask)
        )
        profile = json.loads(stored)
        vector = (recs.get("message") or {}).get("vector")
        async with http.post(
            f"{knowledge_url}/v1/knowledge/search", json={"vector": vector, "k": 3}
        ) as answer:
            found = await answer.json()
        reply = {
            "reply": "ok",
            "profile_version": profile.get("version"),
            "recommendations": recs["items"][:3],
            "knowledge": found.get("hits", []),
            "degraded": [],
        }
        return Response(json.dumps(reply), media_type=JSON)

    app.add_api_route("/v1/respond", respond, methods=["POST"])
    return app


def floor_spec(name: str, port: int, bodies: Path, extra: list[str] | None = None) -> ServerSpec:
    argv = [
        sys.executable,
        "-m",
        "bench.floor",
        name,
        "--port",
        str(port),
        "--bodies",
        str(bodies),
        *(extra or []),
    ]
    return ServerSpec(
        name=f"floor-{name}",
        argv=argv,
        probe=lambda: probe_tcp("127.0.0.1", port),
        urls={f"floor-{name}": f"http://127.0.0.1:{port}"},
        env=clean_env(),
    )


def start_floor(
    stack: Stack, work: Path, *, profile: dict[str, Any], recommendations: dict[str, Any]
) -> str:
    """Start the three floor processes on ``stack``; the gateway's URL.

    ``profile`` and ``recommendations`` are real answers of the mesh, so every hop
    carries the bytes it carries there.
    """
    bodies = work / "floor-bodies.json"
    bodies.write_text(json.dumps({"profile": profile, "recommendations": recommendations}))
    urls = {}
    for leaf in ("profile", "recommend"):
        server = stack.start(floor_spec(leaf, processes.free_port(), bodies))
        urls[leaf] = server.url()
    gateway = floor_spec(
        "gateway",
        processes.free_port(),
        bodies,
        ["--profile-url", urls["profile"], "--recommend-url", urls["recommend"]],
    )
    return stack.start(gateway).url()


def start_floor_v2(
    stack: Stack,
    work: Path,
    *,
    profile: dict[str, Any],
    recommendations: dict[str, Any],
    knowledge: dict[str, Any],
) -> str:
    """Start v2 on ``stack``: its own ``redis-server`` (seeded with ``profile``), leaf A,
    leaf B and the gateway; the gateway's URL. The bodies are real answers of the mesh
    (``recommendations`` asked with ``vector: true``, ``knowledge`` a search with it)."""
    import redis  # noqa: PLC0415

    data = work / "floor-redis"
    data.mkdir(parents=True, exist_ok=True)
    redis_url = stack.start(redis_spec(processes.free_port(), data)).urls["redis"]
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(PROFILE_KEY, json.dumps(profile))
    finally:
        client.close()
    bodies = work / "floor-v2-bodies.json"
    bodies.write_text(
        json.dumps({"profile": profile, "recommendations": recommendations, "knowledge": knowledge})
    )
    recommend = stack.start(
        floor_spec("recommend-v2", processes.free_port(), bodies, ["--redis-url", redis_url])
    ).url()
    search = stack.start(floor_spec("knowledge", processes.free_port(), bodies)).url()
    gateway = floor_spec(
        "gateway-v2",
        processes.free_port(),
        bodies,
        ["--redis-url", redis_url, "--recommend-url", recommend, "--knowledge-url", search],
    )
    return stack.start(gateway).url()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "role",
        choices=("gateway", "profile", "recommend", "gateway-v2", "recommend-v2", "knowledge"),
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--profile-url", default="")
    parser.add_argument("--recommend-url", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--knowledge-url", default="")
    args = parser.parse_args()
    bodies = json.loads(args.bodies.read_text())
    if args.role == "gateway":
        app = gateway_app(args.profile_url, args.recommend_url)
    elif args.role == "gateway-v2":
        app = gateway_v2_app(args.redis_url, args.recommend_url, args.knowledge_url)
    elif args.role == "recommend-v2":
        app = recommend_v2_app(json.dumps(bodies["recommendations"]).encode(), args.redis_url)
    elif args.role == "knowledge":
        body = json.dumps(bodies["knowledge"]).encode()
        app = leaf_app(body, "POST", "/v1/knowledge/search")
    elif args.role == "profile":
        app = leaf_app(json.dumps(bodies["profile"]).encode(), "GET", "/v1/profiles/{user_id}")
    else:
        body = json.dumps(bodies["recommendations"]).encode()
        app = leaf_app(body, "POST", "/v1/recommendations")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
