"""Respond as an OpenAI proxy: its overhead on time to first token and on total time.

Starts the fake upstream (``rapport.devstack.fake_llm``: no think time, three
content deltas) in its own process, Tansu, nx-27017 and Redis, real
``rapport-profile`` and ``rapport-recommend`` (no Triton here: trending serves,
so recommend answers fast), and three ``rapport-respond`` processes in LLM mode:

- **proxy path**: its profile and recommend are a closed port, so the fan-out
  fails at once: what the relaying itself costs (validation, prompt, the
  ``openai`` client, re-streaming);
- the same with the ``openai`` client on httpx2 instead of aiohttp
  (``RAPPORT_LLM_HTTP_CLIENT``), side by side;
- **with the fan-out**: profile read and recommend before the upstream call,
  as every personalized reply does.

The load generator (its own process; the official ``openai`` client,
streaming, the way a chatbot calls) sends the same request straight to the
fake and through each respond, closed loop at concurrency 1 and 16, in
alternating rounds so drift on this shared box hits every target alike.
Overhead is (through respond) - (direct) at each percentile of the same run.

    .venv/bin/python -m bench.proxy [--requests 600]
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from typing import Any

from bench.mesh import KEY, bench_plan, fake_llm_spec, scratch
from bench.options import bounded, parser
from bench.results_file import write_results
from bench.stats import Stopwatch, percentiles
from rapport.devstack import processes
from rapport.devstack.stack import start_mesh

ROUNDS = 3
TARGETS = {"p99_ttft_overhead_ms": 5}
MESSAGE = "can you suggest a movie for tonight"


async def _stream_all(base_url: str, key: str, count: int, concurrency: int) -> dict[str, Any]:
    from openai import AsyncOpenAI  # noqa: PLC0415 - in the load-generator process only

    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
    ttft: list[float] = []
    total: list[float] = []
    errors = 0
    queue = iter(range(count))

    async def worker() -> None:
        nonlocal errors
        for _ in queue:
            took = Stopwatch()
            first = None
            try:
                stream = await client.chat.completions.create(
                    model="rapport",
                    messages=[{"role": "user", "content": MESSAGE}],
                    user="bench-user",
                    stream=True,
                )
                async for chunk in stream:
                    if first is None and any(c.delta.content for c in chunk.choices):
                        first = took.seconds
            except Exception:  # counted; the run goes on
                errors += 1
                continue
            ended = took.stop()
            ttft.append(ended if first is None else first)
            total.append(ended)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()
    return {"ttft": ttft, "total": total, "errors": errors}


def _load(job: tuple[str, str, int, int], out: Any) -> None:
    import uvloop  # noqa: PLC0415

    out.put(uvloop.run(_stream_all(*job)))


def run_streams(base_url: str, key: str, count: int, concurrency: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_load, args=((base_url, key, count, concurrency), queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=600)
    proc.join(timeout=30)
    return result


def ms_percentiles(seconds: list[float]) -> dict[str, float | None]:
    """p50, p90 and p99 in ms, keyed ``p50``, ``p90``, ``p99``."""
    return percentiles(seconds, (50, 90, 99), scale=1000, suffix="")


def overhead(
    through: dict[str, float | None], direct: dict[str, float | None]
) -> dict[str, float | None]:
    """Each percentile through respond less the direct call's (ms)."""
    out: dict[str, float | None] = {}
    for q, value in through.items():
        base = direct.get(q)
        out[q] = None if value is None or base is None else round(value - base, 2)
    return out


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--requests", type=int, default=600, help="per target and level")
    args = options.parse_args()
    count = bounded(args.requests, 60, 6000)
    rows: list[dict[str, Any]] = []
    with scratch() as (work, stack):
        free = processes.free_port
        llm_url = stack.start(fake_llm_spec(free())).url()
        # recommend without Triton (nothing listens there): it answers from its fallback.
        plan = bench_plan(
            ["profile", "recommend"],
            infra=["kafka", "mongo", "redis"],
            env={"recommend": {"RAPPORT_TRITON_GRPC_URL": f"127.0.0.1:{free()}"}},
        )
        mesh = start_mesh(plan, stack, work)
        llm_env = {"RAPPORT_LLM_BASE_URL": f"{llm_url}/v1", "RAPPORT_LLM_API_KEY": "sk-bench"}
        closed = f"http://127.0.0.1:{free()}"  # nothing listens: the fan-out fails at once
        no_fan_out = {**llm_env, "RAPPORT_PROFILE_URL": closed, "RAPPORT_RECOMMEND_URL": closed}

        def respond(extra: dict[str, str]) -> str:
            return stack.start(plan.spec("respond", mesh, extra)).url()

        targets = {
            "direct to the upstream": llm_url,
            "respond, proxy path": respond(no_fan_out),
            "respond, proxy path, httpx2": respond(
                {**no_fan_out, "RAPPORT_LLM_HTTP_CLIENT": "httpx"}
            ),
            "respond, with the fan-out": respond(llm_env),
        }
        for url in targets.values():
            run_streams(url, KEY, 40, 4)  # warm-up: connections, caches, recommend's circuit
        for concurrency in (1, 16):
            samples: dict[str, dict[str, list[float]]] = {
                t: {"ttft": [], "total": [], "errors": []} for t in targets
            }
            level = Stopwatch()
            for _ in range(ROUNDS):
                for target, url in targets.items():
                    raw = run_streams(url, KEY, count // ROUNDS, concurrency)
                    samples[target]["ttft"] += raw["ttft"]
                    samples[target]["total"] += raw["total"]
                    samples[target]["errors"].append(raw["errors"])
            seconds = level.seconds
            direct = {
                k: ms_percentiles(samples["direct to the upstream"][k]) for k in ("ttft", "total")
            }
            for target, got in samples.items():
                ttft = ms_percentiles(got["ttft"])
                row: dict[str, Any] = {
                    "scenario": f"{target} (TTFT)",
                    "target": target,
                    "load": f"closed, {concurrency} conns, {len(got['ttft'])} streams",
                    "errors": sum(got["errors"]),
                    "p50_ms": ttft["p50"],
                    "p99_ms": ttft["p99"],
                    "ttft_ms": ttft,
                    "total_ms": ms_percentiles(got["total"]),
                }
                row["ttft_overhead_ms"] = overhead(row["ttft_ms"], direct["ttft"])
                row["total_overhead_ms"] = overhead(row["total_ms"], direct["total"])
                rows.append(row)
                print(
                    f"{target:<30} {row['load']:<32} TTFT {row['ttft_ms']} "
                    f"(+{row['ttft_overhead_ms']})  total {row['total_ms']} "
                    f"(+{row['total_overhead_ms']})  errors={row['errors']}",
                    flush=True,
                )
            print(f"  ({seconds:.0f} s for concurrency {concurrency})", flush=True)
    write_results(
        "proxy",
        rows,
        rounds=ROUNDS,
        targets=TARGETS,
        note="fake upstream with no think time, so every ms is the path's own; load generator, "
        "fake upstream, respond x3, profile, recommend (no Triton), Tansu, nx-27017 and Redis "
        "share 2 cores",
    )


if __name__ == "__main__":
    main()
