"""The floor mesh: Rapport's reply path with nothing in it but the hops.

A gateway answers ``POST /v1/respond`` by reading ``GET /v1/profiles/{id}`` from one
leaf, then ``POST /v1/recommendations`` (the profile inline) to another, and returns
a small JSON reply. Same servers (FastAPI on uvicorn, uvloop, httptools), same client
(one pooled aiohttp session), same payload sizes as the real mesh, same loopback and
cores; no stores, no models, no telemetry, no validation beyond parsing JSON. What the
real mesh serves against this is the share of the box its own work leaves to the hops.

    python -m bench.floor gateway|profile|recommend --port P [--profile-url U --recommend-url U]
"""

from __future__ import annotations

import argparse
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
from rapport.devstack.servers import ServerSpec, clean_env, probe_tcp
from rapport.devstack.stack import Stack

JSON = "application/json"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("gateway", "profile", "recommend"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--profile-url", default="")
    parser.add_argument("--recommend-url", default="")
    args = parser.parse_args()
    bodies = json.loads(args.bodies.read_text())
    if args.role == "gateway":
        app = gateway_app(args.profile_url, args.recommend_url)
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
