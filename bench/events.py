"""The event path as ``make up`` runs it: freshness and CPU per event at fixed rates.

For each rate (250, 500, 1,000 and 2,000 single events per second by default) and
each memory setting (on, as ``make up`` runs it, and off), a fresh mesh is started
with ``rapport-dev up`` (Tansu's in-memory log costs more CPU per event the more it
holds, so no round inherits another's log), then:

1. idle CPU per process for a few seconds (consumer polls, the broker's own loop);
2. single-event POSTs to ingest at the rate, open loop, from a separate process; half
   are chat messages that state facts (``"I'm vegetarian and I live in Lyon"``), half
   item views, over 5,000 users;
3. meanwhile a probe user posts one item view at a time and polls
   ``GET /v1/profiles/{user}`` until its ``version`` rises: the freshness;
4. at the end, the backlog (accepted by ingest, not yet applied by profile) and how
   long it takes to drain; the apply rate over the load; CPU ms per accepted event
   for each process, its idle burn taken off;
5. the store's own floor in the same mesh: a batch load and bulk write of 500 of
   the profiles just stored, without the service (profiles/s).

``--base PATH`` runs the same rounds against another checkout (its own ``.venv``,
``make install`` done there), alternating base and this tree within each round, so
the two are compared on the same box minutes apart. ``--profiles 1,2`` also runs
each round with a second profile process in the consumer group (scale-out on one
box). ``--pyspy`` records ingest and profile at 1,000/s with py-spy.

    .venv/bin/python -m bench.events [--rates 250,500,1000,2000] [--seconds 15]
        [--memory on,off] [--base /path/to/checkout] [--profiles 1,2] [--pyspy]

Results: ``bench/results/events.json``, every latency beside its load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.mesh import cpu_ms_per, mongo_floor
from bench.options import bounded, parser
from bench.results_file import RESULTS, write_results
from bench.stats import Stopwatch, percentiles
from rapport.devstack.processes import free_port
from rapport.devstack.scrape import sample_sum

ROOT = Path(__file__).resolve().parent.parent
USERS = 5000
CHAT_TEXT = "I'm vegetarian and I live in Lyon, any ideas?"
IDLE_S = 3.0
PROBE_GAP_S = 0.05
PROBE_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 60.0
PROFILE_ROUTE = "/v1/profiles/{user_id}"
REBALANCE_SETTLE_S = 10.0


@dataclass(frozen=True)
class Tree:
    label: str
    root: Path

    @property
    def dev(self) -> Path:
        return self.root / ".venv" / "bin" / "rapport-dev"


@dataclass
class Mesh:
    tree: Tree
    stack: dict[str, Any]
    extra: list[subprocess.Popen[bytes]]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack['api_key']}"}

    def url(self, service: str) -> str:
        return str(self.stack["services"][service])

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Each server and service with its children; extra profile processes count as
        profile."""
        out: dict[str, list[psutil.Process]] = {}
        for name, pid in self.stack["pids"].items():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                out[name] = [proc, *proc.children(recursive=True)]
        for extra in self.extra:
            with contextlib.suppress(psutil.NoSuchProcess):
                out.setdefault("profile", []).append(psutil.Process(extra.pid))
        return out


def cpu_seconds(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for name, members in procs.items():
        total = 0.0
        for member in members:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = member.cpu_times()
                total += times.user + times.system
        spent[name] = total
    return spent


@contextlib.contextmanager
def mesh_up(tree: Tree, *, memory: bool, profiles: int) -> Iterator[Mesh]:
    """``rapport-dev up`` in the tree, memory on or off; stopped (``down``) on the way out."""
    env = {**os.environ, "RAPPORT_PROFILE_MEMORY": "true" if memory else "false"}
    subprocess.run(  # noqa: S603 - the checkout's own dev tool
        [str(tree.dev), "up"], cwd=tree.root, env=env, check=True, capture_output=True
    )
    mesh = Mesh(tree, json.loads((tree.root / ".rapport" / "stack.json").read_text()), [])
    try:
        for _ in range(profiles - 1):
            mesh.extra.append(second_profile(mesh))
        if mesh.extra:
            settle_extra_profiles(mesh)
        yield mesh
    finally:
        for proc in mesh.extra:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        subprocess.run(  # noqa: S603 - the checkout's own dev tool
            [str(tree.dev), "down"], cwd=tree.root, check=False, capture_output=True
        )


def second_profile(mesh: Mesh) -> subprocess.Popen[bytes]:
    """Another profile process in the same consumer group, on a free port."""
    first = psutil.Process(mesh.stack["pids"]["profile"])
    env = first.environ()
    env["RAPPORT_PROFILE_PORT"] = str(free_port())
    log = (mesh.tree.root / ".rapport" / "profile-2.log").open("ab")
    return subprocess.Popen(first.cmdline(), env=env, stdout=log, stderr=log)  # noqa: S603


def extra_profile_urls(mesh: Mesh) -> list[str]:
    return [
        f"http://127.0.0.1:{psutil.Process(proc.pid).environ()['RAPPORT_PROFILE_PORT']}"
        for proc in mesh.extra
    ]


def settle_extra_profiles(mesh: Mesh, timeout_s: float = 60.0) -> None:
    """Until every added profile process is ready, then a rebalance's worth more: its
    start-up (models, connections) must not count as idle burn, nor its joining the
    group stall the load."""
    deadline = time.monotonic() + timeout_s
    for url in extra_profile_urls(mesh):
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout_s:g} s")
            time.sleep(0.2)
    time.sleep(REBALANCE_SETTLE_S)


def event(i: int) -> dict[str, Any]:
    user = f"bg-{i % USERS}"
    now = datetime.now(UTC).isoformat()
    if i % 2:
        return {
            "type": "chat_message",
            "user_id": user,
            "session_id": "s",
            "text": CHAT_TEXT,
            "occurred_at": now,
        }
    return {
        "type": "item_view",
        "user_id": user,
        "item_id": str(1 + i % 1600),
        "category": "Drama",
        "occurred_at": now,
    }


async def _background(url: str, headers: dict[str, str], rate: float, seconds: float) -> int:
    """Open loop: each event at its planned time, answered or not; returns the 202s."""
    accepted = 0
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as http:

        async def one(i: int, planned: float) -> None:
            nonlocal accepted
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(url, json=event(i), headers=headers) as response:
                    accepted += response.status == 202

        origin = time.perf_counter() + 0.1
        await asyncio.gather(*(one(i, origin + i / rate) for i in range(total)))
    return accepted


def _background_process(job: tuple[str, dict[str, str], float, float], out: Any) -> None:
    import uvloop  # noqa: PLC0415

    out.put(uvloop.run(_background(*job)))


async def version(http: aiohttp.ClientSession, mesh: Mesh, user: str) -> int:
    async with http.get(f"{mesh.url('profile')}/v1/profiles/{user}", headers=mesh.headers) as r:
        body = await r.json()
    return int(body.get("version", 0)) if r.status == 200 else 0


async def probe(mesh: Mesh, until: float) -> list[float]:
    """One item view at a time for a probe user; ms until its profile's version rises."""
    user = f"probe-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            before = await version(http, mesh, user)
            body = {"type": "item_view", "user_id": user, "item_id": "50", "category": "Drama"}
            body["occurred_at"] = datetime.now(UTC).isoformat()
            took = Stopwatch()
            async with http.post(
                f"{mesh.url('ingest')}/v1/events", json=body, headers=mesh.headers
            ) as r:
                if r.status != 202:
                    continue
            while (  # noqa: ASYNC110 - polling the read is what is measured
                await version(http, mesh, user) <= before and took.seconds < PROBE_TIMEOUT_S
            ):
                await asyncio.sleep(0.001)
            latencies.append(took.ms)
            await asyncio.sleep(PROBE_GAP_S)
    return latencies


async def counted(mesh: Mesh) -> tuple[float, float, float]:
    """(events ingest accepted, events profile applied or settled, profile reads) so far."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mesh.url('ingest')}/metrics") as r:
            accepted = sample_sum(await r.text(), "rapport_ingest_events_total", outcome="accepted")
        settled = reads = 0.0
        for url in [mesh.url("profile"), *extra_profile_urls(mesh)]:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/metrics") as r:
                    text = await r.text()
                settled += sample_sum(text, "rapport_profile_events_total")
                reads += sample_sum(text, "rapport_http_requests_total", route=PROFILE_ROUTE)
    return accepted, settled, reads


def pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    binary = ROOT / ".venv" / "bin" / "py-spy"
    cmd = [str(binary), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50"]
    return subprocess.Popen(  # noqa: S603 - argv built here
        [*cmd, "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def wait_ready(mesh: Mesh, timeout_s: float = 60.0) -> None:
    """Until profile's consumer has its partitions (an event posted now is applied)."""
    user = f"warm-{uuid.uuid4().hex[:8]}"
    body = {"type": "item_view", "user_id": user, "item_id": "1", "category": "Drama"}
    body["occurred_at"] = datetime.now(UTC).isoformat()
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{mesh.url('ingest')}/v1/events", json=body, headers=mesh.headers
        ) as r:
            r.raise_for_status()
        while await version(http, mesh, user) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("profile did not apply an event within a minute")
            await asyncio.sleep(0.05)


async def measure(mesh: Mesh, rate: int, seconds: float, spy: bool) -> dict[str, Any]:
    await wait_ready(mesh)
    procs = mesh.processes()
    idle0 = cpu_seconds(procs)
    await asyncio.sleep(IDLE_S)
    idle = {k: (v - idle0[k]) / IDLE_S for k, v in cpu_seconds(procs).items()}
    accepted0, settled0, reads0 = await counted(mesh)
    spies = []
    if spy:
        RESULTS.mkdir(exist_ok=True)
        for name in ("ingest", "profile"):
            out = RESULTS / f"events-pyspy-{name}-{rate}.txt"
            spies.append(pyspy(mesh.stack["pids"][name], seconds - 2, out))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    job = (f"{mesh.url('ingest')}/v1/events", mesh.headers, float(rate), seconds)
    loader = ctx.Process(target=_background_process, args=(job, queue))
    cpu0 = cpu_seconds(procs)
    run, until = Stopwatch(), time.monotonic() + seconds
    loader.start()
    latencies = await probe(mesh, until)
    accepted = await asyncio.to_thread(queue.get, True, seconds + 120)
    loader.join(timeout=30)
    load_s = run.seconds
    ingested, settled, reads = await counted(mesh)
    backlog = (ingested - accepted0) - (settled - settled0)
    drain = Stopwatch()
    while (ingested - accepted0) - (settled - settled0) > 0:
        if drain.seconds > DRAIN_TIMEOUT_S:
            break
        await asyncio.sleep(0.1)
        ingested, settled, _ = await counted(mesh)
    drain_s = drain.seconds
    elapsed = run.seconds
    cpu1 = cpu_seconds(procs)
    for proc in spies:
        proc.wait(timeout=60)
    per_event = (
        cpu_ms_per(cpu0, cpu1, accepted, idle_per_s=idle, seconds=elapsed) if accepted else {}
    )
    floor = await mongo_floor(mesh.stack["infra"]["mongo"])
    fresh = percentiles(latencies, digits=1, prefix="fresh_", maximum=True)
    return {
        "tree": mesh.tree.label,
        "rate": rate,
        "seconds": seconds,
        "offered": int(rate * seconds),
        "accepted": accepted,
        **fresh,
        "probes": len(latencies),
        # The probe's polling: profile's CPU per event includes serving these reads.
        "probe_reads_per_s": round((reads - reads0) / load_s, 1),
        "applied_per_s": round((settled - settled0) / load_s, 1),
        "backlog_at_end": int(backlog),
        "drain_s": round(drain_s, 2),
        "cpu_ms_per_event": {k: v for k, v in per_event.items() if v >= 0.005},
        "cpu_ms_per_event_total": round(sum(per_event.values()), 3),
        "store_floor_profiles_per_s": floor["profiles_per_s"],
    }


def show(row: dict[str, Any]) -> None:
    cpu = " ".join(f"{k}={v}" for k, v in sorted(row["cpu_ms_per_event"].items()))
    print(
        f"{row['tree']:<6} memory={row['memory']:<3} profiles={row['profiles']} "
        f"rate={row['rate']:>5}/s accepted={row['accepted']:>6} "
        f"fresh p50={row['fresh_p50_ms']!s:>7} p99={row['fresh_p99_ms']!s:>7} "
        f"max={row['fresh_max_ms']!s:>7} ms  applied/s={row['applied_per_s']:>7} "
        f"backlog={row['backlog_at_end']:>6} reads/s={row['probe_reads_per_s']:>6}  "
        f"cpu ms/event total={row['cpu_ms_per_event_total']} "
        f"[{cpu}]  store floor={row['store_floor_profiles_per_s']}/s",
        flush=True,
    )


def main() -> None:
    options = parser(__doc__, seconds=15.0, seconds_help="per round (bounded)")
    options.add_argument("--rates", default="250,500,1000,2000")
    options.add_argument("--memory", default="on,off")
    options.add_argument("--base", type=Path, help="a checkout to compare against")
    options.add_argument("--profiles", default="1", help="profile processes: 1, 2 or 1,2")
    options.add_argument("--pyspy", action="store_true", help="py-spy ingest and profile at 1k/s")
    options.add_argument("--out", default="events", help="results file name")
    args = options.parse_args()
    seconds = bounded(args.seconds, 5.0, 120.0)
    trees = [Tree("this", ROOT)]
    if args.base is not None:
        trees.insert(0, Tree("base", args.base.resolve()))
    rows: list[dict[str, Any]] = []
    for rate in (int(r) for r in args.rates.split(",")):
        for memory in args.memory.split(","):
            for profiles in (int(p) for p in args.profiles.split(",")):
                for tree in trees:
                    with mesh_up(tree, memory=memory == "on", profiles=profiles) as mesh:
                        spy = args.pyspy and rate == 1000 and tree.label == "this"
                        row = asyncio.run(measure(mesh, rate, seconds, spy and profiles == 1))
                    row = {"memory": memory, "profiles": profiles, **row}
                    show(row)
                    rows.append(row)
    write_results(
        args.out,
        rows,
        load="single-event POSTs to ingest, open loop; half chat messages stating facts",
        users=USERS,
        base=str(args.base) if args.base else None,
    )


if __name__ == "__main__":
    main()
