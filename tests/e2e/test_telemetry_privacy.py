"""No personal data in telemetry (DESIGN.md, "Personal data"): a canary user id and a
canary chat message go through every route that takes them, on the whole mesh with every
span sampled and exported; then every exported span (name, attributes, events, resource),
every line of every service's log and every service's /metrics page is scanned for them.
Spans name routes by their template, never by the raw path."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from rapport.devstack.waiting import eventually, wait_until
from tests.e2e.mesh import Collector, Mesh

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("ingest", "profile", "recommend", "knowledge", "respond")
# The server spans the canary's requests make, by service: each named by its template.
ROUTES = {
    "ingest": {"POST /v1/events"},
    "profile": {
        "GET /v1/profiles/{user_id}",
        "POST /v1/profiles/{user_id}/memory/recall",
        "DELETE /v1/profiles/{user_id}/memory/{memory_id}",
        "PUT /v1/profiles/{user_id}/consent",
        "DELETE /v1/profiles/{user_id}",
    },
    "recommend": {"POST /v1/recommendations"},
    "knowledge": {"POST /v1/knowledge/search"},
    "respond": {"POST /v1/respond", "POST /v1/chat/completions"},
}
RAW_PATH_ATTRIBUTES = ("http.target", "url.path", "http.url", "url.full")


class Canary:
    """One user id and one message, unique to this run, and one trace for all of it."""

    def __init__(self) -> None:
        self.user = f"canary-user-{uuid.uuid4().hex}"
        self.token = f"canary-text-{uuid.uuid4().hex}"
        self.text = f"{self.token} I love hiking"
        self.trace_id = uuid.uuid4().hex

    def needles(self) -> list[str]:
        """The raw strings, and their URL-encoded forms where these differ."""
        raw = [self.user, self.token]
        return raw + [quote(n, safe="") for n in raw if quote(n, safe="") != n]

    def traced(self) -> dict[str, str]:
        return {"traceparent": f"00-{self.trace_id}-{secrets.token_hex(8)}-01"}


async def call(mesh: Mesh, canary: Canary, method: str, service: str, path: str, **kw: Any) -> Any:
    """A call in the canary's trace, whose answer must be a success."""
    status, body = await mesh.call(
        method, service, path, headers={**canary.traced(), **kw.pop("headers", {})}, **kw
    )
    assert 200 <= status < 300, (method, service, path, status, body)
    return body


async def wait_applied(mesh: Mesh, canary: Canary, version: int) -> dict[str, Any]:
    """The profile once the processor has applied ``version`` events."""

    async def applied() -> bool:
        return int((await mesh.profile(canary.user))["version"]) >= version

    await eventually(applied, timeout_s=60)
    return await mesh.profile(canary.user)


async def send_canary_traffic(mesh: Mesh, canary: Canary) -> None:
    user, text = canary.user, canary.text
    now = datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = [
        {"type": "item_view", "item_id": "50", "category": "Sci-Fi", "session_id": "s-c"},
        {"type": "search", "query": text, "session_id": "s-c"},
        {"type": "chat_message", "text": text, "session_id": "s-c"},
    ]
    deadline = {"X-Rapport-Deadline-Ms": "2000"}
    # A reply to a user nobody knows yet (the cold path), recorded as their first event.
    await call(
        mesh,
        canary,
        "POST",
        "respond",
        "/v1/respond",
        json={"user_id": user, "session_id": "s-c", "message": text},
        headers=deadline,
    )
    # One event alone (ingest's hot path), then a batch (the framework's route).
    one = {"user_id": user, "occurred_at": now, **events[0]}
    await call(mesh, canary, "POST", "ingest", "/v1/events", json=one)
    batch = [{"user_id": user, "occurred_at": now, **e} for e in events[1:]]
    await call(mesh, canary, "POST", "ingest", "/v1/events", json={"events": batch})
    # A refused event (422) echoes nothing of it into telemetry either.
    status, _ = await mesh.call(
        "POST",
        "ingest",
        "/v1/events",
        json={"user_id": user, "occurred_at": now, "type": "chat_message", "text": text, "x": 1},
        headers=canary.traced(),
    )
    assert status == 422
    await wait_applied(mesh, canary, 4)

    await call(mesh, canary, "GET", "profile", f"/v1/profiles/{user}")
    answer = await call(
        mesh,
        canary,
        "POST",
        "recommend",
        "/v1/recommendations",
        json={"user_id": user, "message": text, "vector": True, "k": 3},
    )
    vector = answer["message"]["vector"]
    await call(mesh, canary, "POST", "knowledge", "/v1/knowledge/search", json={"vector": vector})
    recalled = await call(
        mesh,
        canary,
        "POST",
        "profile",
        f"/v1/profiles/{user}/memory/recall",
        json={"vector": vector, "min_score": -1},
    )
    await call(
        mesh,
        canary,
        "POST",
        "respond",
        "/v1/respond",
        json={"user_id": user, "session_id": "s-c", "message": text},
        headers=deadline,
    )
    personas = await call(mesh, canary, "GET", "respond", "/v1/models")
    for stream in (False, True):
        completion = {
            "model": personas["data"][0]["id"],
            "user": user,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
        await call(
            mesh,
            canary,
            "POST",
            "respond",
            "/v1/chat/completions",
            json=completion,
            headers=deadline,
        )
    # The three chat messages respond recorded since, applied (memory keeps them).
    profile = await wait_applied(mesh, canary, 7)

    # Forget what memory kept: a fact, a remembered message, and one it never had (404).
    kept = [f["memory_id"] for f in profile["facts"][:1]]
    kept += [m["memory_id"] for m in recalled["recalled"][:1]]
    for memory_id in kept:
        await call(mesh, canary, "DELETE", "profile", f"/v1/profiles/{user}/memory/{memory_id}")
    status, _ = await mesh.call(
        "DELETE", "profile", f"/v1/profiles/{user}/memory/f-00000000", headers=canary.traced()
    )
    assert status == 404

    # Opt out, a reply after it (not personalized, not recorded), then erasure.
    await call(
        mesh,
        canary,
        "PUT",
        "profile",
        f"/v1/profiles/{user}/consent",
        json={"personalization": False},
    )

    async def opted_out() -> bool:
        return (await mesh.profile(user))["consent"]["personalization"] is False

    await eventually(opted_out, timeout_s=60)
    await call(
        mesh,
        canary,
        "POST",
        "respond",
        "/v1/respond",
        json={"user_id": user, "session_id": "s-c", "message": text},
        headers=deadline,
    )
    await call(mesh, canary, "DELETE", "profile", f"/v1/profiles/{user}")


async def wait_exported(mesh: Mesh, collector: Collector) -> None:
    """Until every service has exported what it recorded so far: each one's exporter
    sends spans in the order they ended, so a span started after the traffic (a request
    in a trace of its own) arriving from every service means the rest has too."""
    marker = uuid.uuid4().hex
    for service in SERVICES:
        status, _ = await mesh.call(
            "GET",
            service,
            "/openapi.json",
            headers={"traceparent": f"00-{marker}-{secrets.token_hex(8)}-01"},
        )
        assert status == 200

    async def arrived() -> bool:
        return {f"rapport-{s}" for s in SERVICES} <= collector.services_in(marker)

    assert await wait_until(arrived, timeout_s=30) is not None, collector.trace(marker)


def log_lines(mesh: Mesh, needle: str) -> Iterator[str]:
    for name, path in mesh.log_paths().items():
        if name not in SERVICES:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if needle in line:
                yield f"{name}.log:{number}: {line[:400]}"


async def test_no_user_id_or_chat_text_in_traces_logs_or_metrics(
    mesh: Mesh, collector: Collector
) -> None:
    canary = Canary()
    await send_canary_traffic(mesh, canary)
    await wait_exported(mesh, collector)

    # Every route's server span came, named by its template, with no raw path.
    servers = [
        s for s in collector.spans if s.trace_id == canary.trace_id and "http.route" in s.attributes
    ]
    named = {(s.service, s.name) for s in servers}
    expected = {(f"rapport-{svc}", route) for svc, routes in ROUTES.items() for route in routes}
    assert expected <= named, sorted(expected - named)
    # The cold reply found nothing published and read the profile over HTTP (respond, and
    # recommend beside it): the client span of that read names the route's template too.
    cold_reads = [
        s.service
        for s in collector.spans
        if s.trace_id == canary.trace_id
        and s.service != "rapport-profile"
        and str(s.attributes.get("http.url", "")).endswith("/v1/profiles/{user_id}")
    ]
    assert cold_reads, collector.trace(canary.trace_id)
    problems = [
        f"{s.service}: span {s.name!r} attribute {key} = {s.attributes[key]!r} (not the route)"
        for s in servers
        for key in RAW_PATH_ATTRIBUTES
        if key in s.attributes and s.attributes["http.route"] not in str(s.attributes[key])
    ]
    pages = {service: await mesh.metrics_page(service) for service in SERVICES}
    for needle in canary.needles():
        found = collector.found(needle)
        found += list(log_lines(mesh, needle))
        found += [f"{s} /metrics" for s, page in pages.items() if needle in page]
        problems += [f"{needle} in {place}" for place in found]
    problems += [f"collector could not read: {failure}" for failure in collector.failures]
    assert not problems, "\n".join(problems)
