"""The fault matrix: shared servers, one bounded scenario after another, the table."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from rapport.chaos import knowledge, memory, serving, stream
from rapport.chaos.harness import Harness, Row
from rapport.chaos.scale import Scale
from rapport.devstack import models
from rapport.devstack.processes import ProcessHandle
from rapport.devstack.stack import INFRA, infra_spec

Run = Callable[[Harness, list[Row], Scale], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    number: str
    title: str
    run: Run
    timeout_s: float  # the whole scenario, start-up of its processes included
    triton: bool = False


SCENARIOS = (
    Scenario("1", "kill -9 the profile consumer", stream.kill_profile_consumer, 480),
    Scenario("2", "pause the broker", serving.pause_broker, 150),
    Scenario("3", "kill Redis", serving.kill_redis, 120),
    Scenario("4", "kill the Mongo-wire server", stream.kill_mongo, 180),
    Scenario("5", "kill Triton", serving.kill_triton, 180, triton=True),
    Scenario("6", "respond deadline under faults", serving.deadline_under_faults, 420, triton=True),
    Scenario("7", "poison records", stream.poison_records, 150),
    Scenario("8", "duplicates and a replay", stream.duplicates_and_replay, 240),
    Scenario("9", "erasure and a replay", stream.erasure_then_replay, 150),
    Scenario("10", "kill -9 the knowledge indexer", knowledge.kill_indexer, 300, triton=True),
    Scenario("11", "Milvus paused, then killed; an erasure", memory.milvus_away, 420, triton=True),
)


async def start_infra(h: Harness, repo_root: Path, *, with_triton: bool) -> None:
    for name in INFRA[:3]:
        h.infra |= (await h.start(infra_spec(name, h.log_dir), scoped=False)).urls
    if with_triton:
        built = repo_root / models.DEFAULT_REPOSITORY
        repository = await asyncio.to_thread(models.private_copy, h.work, built)
        h.triton_spec = infra_spec("triton", h.log_dir, model_repository=repository)
        h.infra |= (await h.ensure_triton()).urls


async def run_scenario(h: Harness, scenario: Scenario, scale: Scale) -> list[Row]:
    """One scenario under its timeout; whatever it started is stopped when it ends."""
    h.log_dir = h.work / "logs" / f"row{scenario.number}"
    h.log_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    error = None
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as scope:
        h.scope = scope
        try:
            await asyncio.wait_for(scenario.run(h, rows, scale), scenario.timeout_s)
        except TimeoutError:
            error = f"timed out after {scenario.timeout_s:.0f} s"
        except Exception as exc:  # a broken scenario is a failed row, not a crashed matrix
            error = f"{type(exc).__name__}: {exc}"[:300]
            (h.log_dir / "error.txt").write_text(traceback.format_exc())
    elapsed = time.monotonic() - started
    if error is not None:
        unfinished = [row for row in rows if not row.passed]
        if not unfinished:
            unfinished = [Row(scenario.number, scenario.title, "-")]
            rows += unfinished
        for row in unfinished:
            row.error = error
    for row in rows:
        row.seconds = row.seconds or elapsed
    return rows


async def run_matrix(
    scale: Scale,
    *,
    work: Path,
    repo_root: Path,
    spawned: list[ProcessHandle],
    only: set[str] | None = None,
    say: Callable[[str], None] = print,
) -> list[Row]:
    """Every chosen scenario in order; ``spawned`` collects each process, for a last sweep."""
    chosen = [s for s in SCENARIOS if not only or s.number in only]
    rows: list[Row] = []
    async with aiohttp.ClientSession() as http:
        h = Harness(work, http)
        h.spawned = spawned
        h.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            say(
                "starting Tansu, nx-27017, Redis"
                + (", Triton" if any(s.triton for s in chosen) else "")
            )
            await start_infra(h, repo_root, with_triton=any(s.triton for s in chosen))
            for scenario in chosen:
                say(f"row {scenario.number}: {scenario.title} ...")
                done = await run_scenario(h, scenario, scale)
                for row in done:
                    say(f"  {row.number} {'PASS' if row.passed else 'FAIL'} ({row.seconds:.0f} s)")
                rows += done
        finally:
            await asyncio.to_thread(h.sweep)
    return rows


# ---- the table ----------------------------------------------------------------------------

COLUMNS = (("#", 4), ("fault", 34), ("figures", 58), ("goal", 30), ("result", 6))


def _cells(row: Row) -> list[str]:
    figures = "; ".join(f"{name} {value}" for name, value in row.figures.items())
    return [row.number, row.fault, figures or "-", row.goal, "PASS" if row.passed else "FAIL"]


def table(rows: Iterable[Row]) -> str:
    def line(cells: list[str]) -> list[str]:
        wrapped = [textwrap.wrap(c, w) or [""] for c, (_, w) in zip(cells, COLUMNS, strict=True)]
        height = max(len(w) for w in wrapped)
        return [
            "  ".join(
                (w[i] if i < len(w) else "").ljust(width)
                for w, (_, width) in zip(wrapped, COLUMNS, strict=True)
            ).rstrip()
            for i in range(height)
        ]

    out = line([name for name, _ in COLUMNS])
    out.append("  ".join("-" * width for _, width in COLUMNS))
    rows = list(rows)
    for row in rows:
        out += line(_cells(row))
    failed = [row for row in rows if not row.passed]
    if failed:
        out.append("")
        for row in failed:
            why = row.error or "failed: " + ", ".join(row.failed_checks)
            out.append(f"row {row.number}: {why}")
    return "\n".join(out)
