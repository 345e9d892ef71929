"""One table and one latency plot from the latency benchmarks' ``bench/results/*.json``
(those in ``ORDER``).

``make bench`` runs the benchmarks, then this. Every latency is printed beside
its load level; the plot (``bench/results/latency.png``) shows p50 and p99 per
scenario and load, on a log scale, one panel per benchmark.

    .venv/bin/python -m bench.summary
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.results_file import RESULTS, write_results

ORDER = (
    "respond",
    "proxy",
    "recommend",
    "triton_models",
    "encoder_options",
    "profile",
    "ingest",
    "infra",
)


@dataclass(frozen=True)
class Row:
    benchmark: str
    scenario: str
    load: str
    throughput: str
    p50_ms: float | None
    p99_ms: float | None


def _throughput(row: dict[str, Any]) -> str:
    batched = row.get("events_per_request", 1) > 1 or "requests_per_s" not in row
    for key, unit in (
        ("events_per_s" if batched else "requests_per_s", "events/s" if batched else "req/s"),
        ("throughput_per_s", "ops/s"),
    ):
        if row.get(key) is not None:
            return f"{row[key]:,.0f} {unit}"
    return ""


def rows_of(benchmark: str, document: dict[str, Any]) -> list[Row]:
    out = []
    for row in document.get("results", []):
        scenario = row.get("scenario") or row.get("operation") or row.get("model") or "?"
        load = row.get("load") or (
            f"concurrency {row['concurrency']}" if "concurrency" in row else ""
        )
        out.append(
            Row(
                benchmark,
                str(scenario),
                str(load),
                _throughput(row),
                row.get("p50_ms"),
                row.get("p99_ms"),
            )
        )
    return out


def load_all() -> tuple[list[Row], dict[str, str]]:
    rows: list[Row] = []
    when: dict[str, str] = {}
    for name in ORDER:
        path = RESULTS / f"{name}.json"
        if path.is_file():
            document = json.loads(path.read_text())
            when[name] = document.get("when", "")
            rows += rows_of(name, document)
    return rows, when


def show(rows: list[Row], when: dict[str, str]) -> None:
    def ms(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "-"

    header = ("benchmark", "scenario", "load", "throughput", "p50 ms", "p99 ms")
    print("\n{:<14} {:<36} {:<30} {:>16} {:>9} {:>9}".format(*header))
    current = ""
    for row in rows:
        if row.benchmark != current:
            current = row.benchmark
            print(f"-- {current} (run {when.get(current, '?')})")
        print(
            f"{row.benchmark:<14} {row.scenario[:36]:<36} {row.load[:30]:<30} "
            f"{row.throughput:>16} {ms(row.p50_ms):>9} {ms(row.p99_ms):>9}"
        )


def plot(rows: list[Row], out: Path) -> None:
    timed = [r for r in rows if r.p50_ms is not None and r.p99_ms is not None]
    benchmarks = [b for b in ORDER if any(r.benchmark == b for r in timed)]
    if not benchmarks:
        return
    fig, axes = plt.subplots(len(benchmarks), 1, figsize=(11, 3.2 * len(benchmarks)))
    for ax, benchmark in zip([axes] if len(benchmarks) == 1 else axes, benchmarks, strict=True):
        mine = [r for r in timed if r.benchmark == benchmark]
        labels = [f"{r.scenario[:28]}\n{r.load[:28]}" for r in mine]
        x = range(len(mine))
        ax.bar([i - 0.2 for i in x], [r.p50_ms or 0 for r in mine], 0.4, label="p50")
        ax.bar([i + 0.2 for i in x], [r.p99_ms or 0 for r in mine], 0.4, label="p99")
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(benchmark)
        ax.set_xticks(list(x), labels, fontsize=6, rotation=30, ha="right")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main() -> None:
    rows, when = load_all()
    if not rows:
        print("no results under bench/results; run `make bench`")
        return
    show(rows, when)
    plot(rows, RESULTS / "latency.png")
    write_results("summary", [asdict(r) for r in rows], runs=when)


if __name__ == "__main__":
    main()
