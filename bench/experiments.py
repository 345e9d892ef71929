"""Experiments on the real mesh: does the report tell the truth, and what do live
experiments cost a reply.

Starts Tansu, nx-27017, Redis, Milvus Lite and Triton (the exported models), then real
``rapport-profile``, ``rapport-recommend``, ``rapport-ingest`` and three
``rapport-respond`` processes on the same mesh: one runs the simulation's experiments,
one runs two experiments every user is enrolled in (the cost), one runs none. profile
knows all four experiments.

1. **Simulation**: two experiments, 50/50, primary KPI purchase, each with simulated
   users of its own (the audience is a channel named after it):

   - ``sim-lift``: control against ``{tone: empathetic}``; users buy at 10% in control
     and 15% in treatment;
   - ``sim-aa``: an A/A. The definitions refuse a variant that changes nothing, so ``b``
     sets the persona every reply has anyway (``rapport``, the templates' default): what
     is served is the same, the exposure is recorded, and users buy at 10% in both.

   ``--users`` per arm (twice that per experiment) each get one reply through respond,
   ``--in-flight`` at once, with a 1 s budget. Once profile counts every
   exposure, the simulated purchases go through ingest's ``POST /v1/events`` in 10
   rounds. The report is read every few seconds while the replies run and after every
   round (peeking), then once profile has applied every purchase: users and conversions
   per variant, the difference and its always-valid 95% interval, whether it covers the
   true difference, whether it is significant, the sample-ratio p-value; for sim-aa,
   whether any read declared significance.
2. **Cost**: respond with two experiments live (every user enrolled in both: a tone
   and a persona experiment; a user's first reply records up to two exposures) against
   respond with none, at the same load: closed loop, 4 connections, ``--replies``
   replies per block, blocks alternating on, off, on, off; users of the simulation (known
   profiles), each in one block only. Replies/s, p50/p99, respond's and profile's CPU
   per reply, and per reply the count of each respond stage
   (``rapport_respond_stage_duration_seconds``: the calls a reply makes), the profile
   API fallbacks and the exposures recorded.

Every latency is printed beside its load level; JSON in ``bench/results/experiments.json``.

    .venv/bin/python -m bench.experiments [--users 2000] [--replies 1000] [--in-flight 8]
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import measure_calls, respond_metrics, stage_means
from bench.mesh import KEY, Started, bench_mesh, scrape, wait_until_ready
from bench.options import bounded, parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.common.experiments import ExperimentReport, VariantResult, load_experiments
from rapport.devstack import processes
from rapport.devstack.scrape import samples
from rapport.devstack.servers import RunningServer
from rapport.profile.experiments_cli import render

LIFT, AA = "sim-lift", "sim-aa"
TRUE_RATES = {
    LIFT: {"control": 0.10, "treatment": 0.15},
    AA: {"a": 0.10, "b": 0.10},
}
DEFAULT_PERSONA = "rapport"  # the templates' first persona: what every reply has anyway
COST_EXPERIMENTS = ("cost-tone", "cost-persona")
MESSAGE = "what is good to watch tonight?"
SEED = 30
PURCHASE_ROUNDS = 10
PEEK_EVERY_S = 4.0
SIM_DEADLINE_MS = "1000"
COST_CONNECTIONS = 4
COST_WARM_UP = 100
EVENTS_PER_POST = 250
APPLY_TIMEOUT_S = 90.0
HEADERS = {"Authorization": f"Bearer {KEY}"}
EXPERIMENTS_SETTING = "RAPPORT_{}_EXPERIMENTS_FILE"


# ---- the experiments files -----------------------------------------------------------


def experiment(
    name: str,
    changes: dict[str, Any],
    *,
    names: tuple[str, str],
    description: str,
    channel: str | None,
) -> dict[str, Any]:
    """A 50/50 experiment on purchases, running from an hour ago for a day."""
    now = datetime.now(UTC)
    control, treatment = names
    return {
        "name": name,
        "description": description,
        "variants": [
            {"name": control, "weight": 50},
            {"name": treatment, "weight": 50, "changes": changes},
        ],
        "audience": {"channels": [channel]} if channel else {},
        "start": (now - timedelta(hours=1)).isoformat(),
        "stop": (now + timedelta(days=1)).isoformat(),
        "primary_kpi": "purchase",
    }


def simulation_experiments() -> list[dict[str, Any]]:
    return [
        experiment(
            LIFT,
            {"tone": "empathetic"},
            names=("control", "treatment"),
            description="Simulated: treatment users buy at 15%, control users at 10%",
            channel=LIFT,
        ),
        experiment(
            AA,
            {"persona": DEFAULT_PERSONA},
            names=("a", "b"),
            description="A/A: b sets the default persona (what is served is the same); "
            "both buy at 10%",
            channel=AA,
        ),
    ]


def cost_experiments() -> list[dict[str, Any]]:
    tone, persona = COST_EXPERIMENTS
    return [
        experiment(
            tone,
            {"tone": "empathetic"},
            names=("control", "empathetic"),
            description="Cost: every user",
            channel=None,
        ),
        experiment(
            persona,
            {"persona": DEFAULT_PERSONA},
            names=("a", "b"),
            description="Cost: every user",
            channel=None,
        ),
    ]


def write_file(path: Path, experiments: list[dict[str, Any]]) -> Path:
    """JSON is YAML: the services read it as their experiments file; checked here first."""
    path.write_text(json.dumps({"version": 1, "experiments": experiments}, indent=2))
    load_experiments(path)
    return path


@dataclass(frozen=True)
class Files:
    simulation: Path  # the simulation's respond
    cost: Path  # the cost's "on" respond
    everything: Path  # profile: it counts both

    @classmethod
    def write(cls, folder: Path) -> Files:
        simulation, cost = simulation_experiments(), cost_experiments()
        return cls(
            simulation=write_file(folder / "simulation.yaml", simulation),
            cost=write_file(folder / "cost.yaml", cost),
            everything=write_file(folder / "everything.yaml", simulation + cost),
        )


def setting(service: str, path: Path) -> dict[str, str]:
    return {EXPERIMENTS_SETTING.format(service.upper()): str(path)}


# ---- HTTP ----------------------------------------------------------------------------


async def reply(
    http: aiohttp.ClientSession,
    respond: str,
    user: str,
    *,
    channel: str | None = None,
    deadline_ms: str | None = None,
) -> tuple[int, dict[str, Any] | None]:
    body: dict[str, Any] = {"user_id": user, "session_id": "bench", "message": MESSAGE}
    if channel:
        body["channel"] = channel
    headers = {"X-Rapport-Deadline-Ms": deadline_ms} if deadline_ms else {}
    async with http.post(f"{respond}/v1/respond", json=body, headers=headers) as response:
        answer = await response.json() if response.status == 200 else None
        return response.status, answer


async def report(http: aiohttp.ClientSession, profile: str, name: str) -> ExperimentReport | int:
    """The report, or the status of a read profile could not answer now (a 503: MongoDB
    did not answer the aggregation within its timeout)."""
    async with http.get(f"{profile}/v1/experiments/{name}") as response:
        if response.status == 503:
            return response.status
        response.raise_for_status()
        return ExperimentReport.model_validate(await response.json())


async def post_events(
    http: aiohttp.ClientSession, ingest: str, events: list[dict[str, Any]]
) -> None:
    for start in range(0, len(events), EVENTS_PER_POST):
        batch = {"events": events[start : start + EVENTS_PER_POST]}
        for attempt in range(20):  # a 503 or 429 says when to come back
            async with http.post(f"{ingest}/v1/events", json=batch) as response:
                if response.status == 202:
                    break
                wait = float(response.headers.get("Retry-After", "0.2"))
            await asyncio.sleep(min(wait, 1.0) * (attempt + 1) / 4)
        else:
            raise RuntimeError("ingest refused a batch 20 times")


def primary(report: ExperimentReport) -> list[VariantResult]:
    return next(k.variants for k in report.kpis if k.role == "primary")


def per_variant(report: ExperimentReport, figure: str) -> dict[str, int]:
    return {v.variant: int(getattr(v, figure)) for v in primary(report)}


# ---- 1. the simulation ---------------------------------------------------------------


@dataclass
class Exposed:
    """Per experiment, each exposed user's variant; and what the replies said."""

    users: dict[str, dict[str, str]] = field(default_factory=lambda: {LIFT: {}, AA: {}})
    replies: Counter[str] = field(default_factory=Counter)

    def counts(self, name: str) -> dict[str, int]:
        counted = Counter(self.users[name].values())
        return {variant: counted.get(variant, 0) for variant in TRUE_RATES[name]}


@dataclass
class Peeks:
    """Every read of the reports: when, in which phase, and what each said."""

    http: aiohttp.ClientSession
    profile: str
    clock: Stopwatch
    reads: list[dict[str, Any]] = field(default_factory=list)

    async def read(self, phase: str) -> dict[str, ExperimentReport] | None:
        """Both reports (None when profile could not answer one now: the read is kept as a
        failed one)."""
        row: dict[str, Any] = {"t_s": round(self.clock.seconds, 1), "phase": phase}
        reports: dict[str, ExperimentReport] = {}
        for name in TRUE_RATES:
            with Stopwatch() as took:
                read = await report(self.http, self.profile, name)
            row.setdefault("read_ms", {})[name] = round(took.ms, 1)
            if isinstance(read, int):
                row["failed"] = read
                self.reads.append(row)
                return None
            reports[name] = read
        for name, read in reports.items():
            treatment = primary(read)[1]
            row[name] = {
                "users": per_variant(read, "users"),
                "conversions": per_variant(read, "conversions"),
                "difference_interval": treatment.difference_interval,
                "significant": treatment.significant,
            }
        self.reads.append(row)
        return reports

    async def every(self, seconds: float, phase: str, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.read(phase)
            try:
                await asyncio.wait_for(done.wait(), seconds)
            except TimeoutError:
                continue

    def answered(self) -> list[dict[str, Any]]:
        return [row for row in self.reads if "failed" not in row]

    def significant_reads(self, name: str) -> list[float]:
        return [row["t_s"] for row in self.answered() if row[name]["significant"]]


async def expose(
    http: aiohttp.ClientSession, respond: str, per_arm: int, in_flight: int
) -> Exposed:
    """One reply per simulated user; who was exposed to which variant."""
    exposed = Exposed()
    users = [(name, f"{name}-u{n:05d}") for n in range(2 * per_arm) for name in TRUE_RATES]
    queue = iter(users)

    async def worker() -> None:
        for name, user in queue:
            status, answer = await reply(
                http, respond, user, channel=name, deadline_ms=SIM_DEADLINE_MS
            )
            if answer is None:
                exposed.replies[f"status {status}"] += 1
                continue
            assigned = next(
                (a for a in answer["personalization"]["experiments"] if a["experiment"] == name),
                None,
            )
            if assigned is None:
                exposed.replies["not enrolled"] += 1
            elif not assigned["exposed"]:
                exposed.replies["enrolled, not exposed"] += 1
            else:
                exposed.replies["exposed"] += 1
                exposed.users[name][user] = assigned["variant"]

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return exposed


async def until_counted(
    peeks: Peeks, figure: str, expected: dict[str, dict[str, int]], phase: str
) -> tuple[float, dict[str, ExperimentReport]]:
    """Read the reports until each variant's ``figure`` is what was sent: the seconds
    taken, and those reports."""
    with Stopwatch() as waited:
        seen: dict[str, dict[str, int]] = {}
        while True:
            reports = await peeks.read(phase)
            if reports is not None:
                seen = {name: per_variant(reports[name], figure) for name in expected}
                if seen == expected:
                    return waited.seconds, reports
            if waited.seconds > APPLY_TIMEOUT_S:
                raise RuntimeError(f"profile counted {seen}, not {expected}, in time")
            await asyncio.sleep(0.5)


def purchases(exposed: Exposed) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """A purchase for each exposed user with their variant's true probability (seeded),
    shuffled; and the buyers per variant."""
    pick = random.Random(SEED)
    events: list[dict[str, Any]] = []
    buyers: dict[str, dict[str, int]] = {}
    for name, users in exposed.users.items():
        buyers[name] = dict.fromkeys(TRUE_RATES[name], 0)
        for user, variant in sorted(users.items()):
            if pick.random() < TRUE_RATES[name][variant]:
                buyers[name][variant] += 1
                events.append({"type": "purchase", "user_id": user, "item_id": "50"})
    pick.shuffle(events)
    return events, buyers


def outcome(name: str, final: ExperimentReport, peeks: Peeks, load: str) -> dict[str, Any]:
    control, treatment = primary(final)
    truth = TRUE_RATES[name]
    true_difference = round(truth[treatment.variant] - truth[control.variant], 4)
    interval = treatment.difference_interval
    reads = [r for r in peeks.answered() if r[name]["users"][treatment.variant] > 0]
    read_ms = [r["read_ms"][name] for r in peeks.reads if name in r["read_ms"]]
    return {
        "scenario": f"simulation, {name}",
        "load": load,
        "true_rates": truth,
        "variants": {
            v.variant: {"users": v.users, "conversions": v.conversions, "rate": v.rate}
            for v in (control, treatment)
        },
        "difference": treatment.difference,
        "difference_interval": interval,
        "true_difference": true_difference,
        "interval_covers_truth": (
            None if interval is None else interval[0] <= true_difference <= interval[1]
        ),
        "significant": treatment.significant,
        "sample_ratio_p": final.sample_ratio.p_value,
        "sample_ratio_mismatch": final.sample_ratio.mismatch,
        "verdict": final.verdict,
        "reads": len(reads),
        "reads_failed": sum(1 for r in peeks.reads if "failed" in r),
        "read_ms": percentiles(read_ms, digits=1, maximum=True),
        "reads_significant": len(peeks.significant_reads(name)),
        "first_significant_read_s": next(iter(peeks.significant_reads(name)), None),
    }


async def simulate(
    started: Started, respond: str, per_arm: int, in_flight: int
) -> list[dict[str, Any]]:
    profile, ingest = started.url("profile"), started.url("ingest")
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        peeks = Peeks(http, profile, Stopwatch())
        done = asyncio.Event()
        peeking = asyncio.create_task(peeks.every(PEEK_EVERY_S, "replies", done))
        with Stopwatch() as replying:
            exposed = await expose(http, respond, per_arm, in_flight)
        done.set()
        await peeking
        replies = sum(exposed.replies.values())
        print(
            f"simulation: {replies} replies, {in_flight} in flight, in {replying.seconds:.0f} s "
            f"({replies / replying.seconds:.0f}/s): {dict(exposed.replies)}",
            flush=True,
        )
        expected = {name: exposed.counts(name) for name in TRUE_RATES}
        waited, _ = await until_counted(peeks, "users", expected, "exposures applied")
        print(f"profile counted every exposure {waited:.1f} s after the last reply: {expected}")

        events, buyers = purchases(exposed)
        now = datetime.now(UTC).isoformat()
        stamped = [{"occurred_at": now, "source": "bench", **e} for e in events]
        size = -(-len(stamped) // PURCHASE_ROUNDS)
        for number in range(PURCHASE_ROUNDS):
            await post_events(http, ingest, stamped[number * size : (number + 1) * size])
            await asyncio.sleep(0.3)  # a read between rounds sees some of them applied
            await peeks.read(f"purchases, round {number + 1}")
        waited, finals = await until_counted(peeks, "conversions", buyers, "purchases applied")
        print(f"profile counted every purchase {waited:.1f} s after the last round: {buyers}")
    load = f"{per_arm} users/arm expected, 1 reply each, {in_flight} in flight"
    rows = []
    for name, final in finals.items():
        print("\n" + render(final) + "\n", flush=True)
        row = outcome(name, final, peeks, load)
        rows.append(row)
        print(
            f"{name}: difference {row['difference']} (truth {row['true_difference']}), "
            f"always-valid 95% {row['difference_interval']}, covers the truth: "
            f"{row['interval_covers_truth']}, significant: {row['significant']}, "
            f"SRM p = {row['sample_ratio_p']}; {row['reads']} reads with users, "
            f"{row['reads_significant']} said significant, {row['reads_failed']} failed (503); "
            f"report read {row['read_ms']}",
            flush=True,
        )
    rows.append({"scenario": "simulation, every read of the reports", "reads": peeks.reads})
    return rows


# ---- 2. the cost ---------------------------------------------------------------------


def respond_counters(respond: str) -> dict[str, float]:
    """Stage sums and counts, degraded, shed (``respond_metrics``), profile API fallbacks,
    exposures recorded and chat messages acknowledged."""
    out = respond_metrics(respond)
    wanted = {
        "rapport_respond_profile_fallbacks_total": "profile_api_fallbacks",
        "rapport_respond_experiment_exposures_total": "exposures",
        "rapport_respond_replies_total": "replies",
    }
    for sample in samples(scrape(respond)):
        if sample.name in wanted:
            key = wanted[sample.name]
            out[key] = out.get(key, 0.0) + sample.value
    return out


@dataclass
class Meter:
    """CPU and respond's counters around one block."""

    respond: RunningServer
    profile: RunningServer
    counters: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> Meter:
        self.counters = respond_counters(self.respond.url())
        self.cpu = self._cpu()
        return self

    def __exit__(self, *_: object) -> None:
        after, cpu = respond_counters(self.respond.url()), self._cpu()
        self.cpu = {k: v - self.cpu[k] for k, v in cpu.items()}
        self.counters = {k: v - self.counters.get(k, 0.0) for k, v in after.items()}

    def _cpu(self) -> dict[str, float]:
        return {
            "respond": processes.cpu_seconds(self.respond.handle),
            "profile": processes.cpu_seconds(self.profile.handle),
        }


async def cost_block(
    http: aiohttp.ClientSession,
    servers: tuple[RunningServer, RunningServer],
    users: Sequence[str],
    label: str,
    load: str,
) -> dict[str, Any]:
    respond, profile = servers
    url = respond.url()
    statuses: Counter[int] = Counter()

    async def one(i: int) -> None:
        status, _ = await reply(http, url, users[i])
        statuses[status] += 1

    with Meter(respond, profile) as meter:
        measured = await measure_calls(
            f"respond, experiments {label}", one, len(users), COST_CONNECTIONS, warm=0
        )
    counted = meter.counters
    replies = max(1, len(users))
    per_reply = {
        f"stage:{k.removeprefix('count:')}": round(v / replies, 3)
        for k, v in counted.items()
        if k.startswith("count:")
    }
    for key in ("profile_api_fallbacks", "exposures"):
        per_reply[key] = round(counted.get(key, 0.0) / replies, 3)
    row = {
        "scenario": f"respond, experiments {label}",
        "load": load,
        "replies": len(users),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "replies_per_s": measured["throughput_per_s"],
        "p50_ms": measured["p50_ms"],
        "p99_ms": measured["p99_ms"],
        "max_ms": measured["max_ms"],
        "cpu_ms_per_reply": {k: round(v * 1000 / replies, 3) for k, v in meter.cpu.items()},
        "per_reply": per_reply,
        "degraded": {
            k.removeprefix("degraded:"): int(v)
            for k, v in counted.items()
            if k.startswith("degraded:") and v
        },
        "shed": int(counted.get("shed", 0)),
        "stage_mean_ms": stage_means({}, {k: v for k, v in counted.items() if ":" in k}),
    }
    print(
        f"{row['scenario']:<26} load={load:<36} replies/s={row['replies_per_s']:>7}  "
        f"p50={row['p50_ms']!s:>7} ms  p99={row['p99_ms']!s:>7} ms  "
        f"cpu ms/reply={row['cpu_ms_per_reply']}  statuses={row['statuses']}",
        flush=True,
    )
    print(f"{'':<26} per reply: {per_reply}  degraded: {row['degraded']}", flush=True)
    return row


async def warm_up(http: aiohttp.ClientSession, url: str, label: str) -> None:
    users = [f"cost-warm-{label}-{n}" for n in range(COST_WARM_UP)]

    async def one(i: int) -> None:
        await reply(http, url, users[i])

    await measure_calls("warm-up", one, len(users), COST_CONNECTIONS, warm=0)


def mean(rows: list[dict[str, Any]], key: str) -> float:
    return round(sum(float(r[key]) for r in rows) / len(rows), 2)


async def cost(
    servers: dict[str, RunningServer], profile: RunningServer, pool: list[str], per_block: int
) -> list[dict[str, Any]]:
    """on, off, on, off: ``per_block`` replies each, to users no other block has."""
    rows = []
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        for label, server in servers.items():  # warm connections and caches; new users
            await warm_up(http, server.url(), label)
        blocks = [(label, number) for number in (1, 2) for label in servers]
        for index, (label, number) in enumerate(blocks):
            users = [pool[(index * per_block + n) % len(pool)] for n in range(per_block)]
            load = f"closed, {COST_CONNECTIONS} conns, {per_block} replies, round {number}"
            rows.append(await cost_block(http, (servers[label], profile), users, label, load))
    summary: dict[str, Any] = {}
    for label in servers:
        mine = [r for r in rows if r["scenario"].endswith(label)]
        summary[label] = {k: mean(mine, k) for k in ("replies_per_s", "p50_ms", "p99_ms")}
        summary[label]["respond_cpu_ms_per_reply"] = round(
            sum(r["cpu_ms_per_reply"]["respond"] for r in mine) / len(mine), 3
        )
    summary["on_minus_off"] = {
        k: round(summary["on"][k] - summary["off"][k], 3) for k in summary["on"]
    }
    load = f"closed, {COST_CONNECTIONS} conns, {per_block} replies a block, 2 rounds"
    print(f"cost, mean of the rounds, load={load}: {summary}", flush=True)
    rows.append({"scenario": "cost, mean of the rounds", "load": load, **summary})
    return rows


# ---- the run -------------------------------------------------------------------------


@contextmanager
def mesh(
    files: Files,
) -> Iterator[tuple[Started, RunningServer, dict[str, RunningServer], RunningServer]]:
    """The mesh; respond for the simulation, the cost's on and off responds, profile."""
    services = ["profile", "recommend", "ingest", "respond"]
    env = {"profile": setting("profile", files.everything)}
    with bench_mesh(services, with_models=True, env=env) as started:
        off_url = started.url("respond")
        by_name = {s.spec.name: s for s in started.stack.running if s.spec.name != "respond"}
        off = next(s for s in started.stack.running if s.urls.get("respond") == off_url)
        simulation = started.start("respond", setting("respond", files.simulation))
        on = started.start("respond", setting("respond", files.cost))
        yield started, simulation, {"on": on, "off": off}, by_name["profile"]


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--users", type=int, default=2000, help="simulated users per arm")
    options.add_argument("--replies", type=int, default=1000, help="replies per cost block")
    options.add_argument("--in-flight", type=int, default=8, help="simulation's replies at once")
    args = options.parse_args()
    per_arm = bounded(args.users, 100, 5000)
    per_block = bounded(args.replies, 100, 5000)
    in_flight = bounded(args.in_flight, 1, 32)
    with (
        tempfile.TemporaryDirectory(prefix="rapport-bench-experiments-") as folder,
        Stopwatch() as run,
    ):
        files = Files.write(Path(folder))
        with mesh(files) as (started, simulation, cost_servers, profile):
            wait_until_ready(started.url("recommend"))
            print(f"mesh up in {run.seconds:.0f} s", flush=True)
            rows = asyncio.run(simulate(started, simulation.url(), per_arm, in_flight))
            pool = [
                u for name in TRUE_RATES for u in (f"{name}-u{n:05d}" for n in range(2 * per_arm))
            ]
            rows += asyncio.run(cost(cost_servers, profile, pool, per_block))
    write_results(
        "experiments",
        rows,
        users_per_arm=per_arm,
        in_flight=in_flight,
        replies_per_cost_block=per_block,
        true_rates=TRUE_RATES,
        seed=SEED,
        seconds=round(run.seconds, 1),
        notes=[
            "sim-aa is an A/A: b sets the persona every reply has anyway (the templates' "
            "default), since the definitions refuse a variant that changes nothing; the "
            "served replies and the simulated purchase rate (10%) are the same in both.",
            "Experiments add no network call to a reply: assignment is a hash; an "
            "exposure is a Kafka produce the reply does not wait for (per_reply.stage:* "
            "counts the calls each reply made, per_reply.exposures the exposures).",
        ],
    )
    print(f"total {run.seconds:.0f} s")


if __name__ == "__main__":
    main()
