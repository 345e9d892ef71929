"""``make demo``: start the local mesh, show that every part answers, stop it.

Recommend and respond are still skeletons (issues 5-6 fill them in), so for
now the demo proves the foundation, ingest and profile: real infrastructure
and the four service processes come up and answer their probes, one event
goes through ingest into Kafka (a retry of it is recognised as a duplicate)
and shows up in the user's profile, and everything goes away again leaving
nothing running. ``KEEP=1`` leaves the
mesh up and prints its URLs and dev API key.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from rapport.devstack import processes, stack
from rapport.devstack.servers import ServerStartError


def _print_status(home: Path) -> bool:
    rows = stack.status(home) or []
    print(f"\n{'PART':<10} {'PID':>8}  {'ANSWERS':<10} URL")
    for row in rows:
        pid = str(row.pid) if row.pid else "external"
        print(f"{row.name:<10} {pid:>8}  {row.answer:<10} {row.url}")
    return bool(rows) and all(row.running and row.answer == "ok" for row in rows)


async def _send_event(data: dict[str, Any]) -> bool:
    """One event through ingest, then the same event again: accepted, then a duplicate."""
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "item_view",
        "user_id": "demo-user",
        "item_id": "m-50",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    headers = {"Authorization": f"Bearer {data['api_key']}"}
    url = f"{data['services']['ingest']}/v1/events"
    statuses = []
    async with aiohttp.ClientSession() as session:
        for attempt in ("first", "retry"):
            async with session.post(url, json=event, headers=headers) as response:
                body = await response.json()
            status = body["events"][0]["status"] if response.status == 202 else body
            statuses.append(status)
            print(f"POST /v1/events ({attempt}): {response.status} {status}")
        profile_url = f"{data['services']['profile']}/v1/profiles/{event['user_id']}"
        profile: dict[str, Any] = {}
        for _ in range(100):  # the profile service applies it within milliseconds to seconds
            async with session.get(profile_url, headers=headers) as response:
                profile = await response.json()
            if profile.get("known"):
                break
            await asyncio.sleep(0.1)
        print(
            f"GET /v1/profiles/{event['user_id']}: known={profile.get('known')} "
            f"version={profile.get('version')} counters={profile.get('counters')} "
            f"recent_items={profile.get('recent_items')}"
        )
    return statuses == ["accepted", "duplicate"] and bool(profile.get("known"))


def main() -> int:
    home = Path(os.environ.get("RAPPORT_HOME", ".rapport"))
    keep = os.environ.get("KEEP", "") not in ("", "0")
    print("starting the local mesh (Kafka, MongoDB wire, Redis, Triton, four services)...")
    started = time.perf_counter()
    try:
        data = stack.up(stack.StackConfig.from_env(home))
    except (stack.StackError, ServerStartError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"up in {time.perf_counter() - started:.1f}s; described in {stack.stack_path(home)}")
    healthy = _print_status(home)
    print("\nan event through ingest (acks=all), its retry, and the profile it made:")
    healthy = asyncio.run(_send_event(data)) and healthy
    if keep:
        print(f"\nKEEP=1: the mesh stays up. Dev API key: {data['api_key']}")
        print("Stop it with: make down")
        return 0 if healthy else 1
    handles = stack.handles_of(data)
    stopped = stack.down(home)
    leftovers = [h.name for h in handles if processes.is_running(h)]
    print(f"\nstopped {len(stopped)} processes; still running: {leftovers or 'none'}")
    return 0 if healthy and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
