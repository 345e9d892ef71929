"""The fault matrix (``make chaos``): one row per fault, its figures, the goal, PASS or FAIL.

Starts Tansu, nx-27017, Redis and Triton (the exported models) on free
loopback ports, then runs each scenario of ``rapport.chaos`` against
real ``rapport-*`` processes, each under its own timeout. Prints the table,
writes ``bench/results/chaos.json`` and exits 1 if any row failed. Stops
everything it started, also when interrupted.

    .venv/bin/python -m bench.chaos [--only 1,6] [--quick]
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.options import parser
from bench.results_file import write_results
from bench.stats import Stopwatch
from rapport.chaos import SCENARIOS, Scale, run_matrix, table
from rapport.devstack import processes
from rapport.devstack.processes import ProcessHandle

REPO = Path(__file__).resolve().parents[1]


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, through every cleanup


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--only", help="comma-separated row numbers, e.g. 1,6")
    options.add_argument("--quick", action="store_true", help="smaller counts, to try the harness")
    args = options.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= {s.number for s in SCENARIOS}:
        options.error(f"--only takes row numbers among {', '.join(s.number for s in SCENARIOS)}")
    scale = Scale.quick() if args.quick else Scale()
    # Logs stay after the run (the table names what failed; the logs say why).
    work = REPO / ".rapport" / "chaos"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    signal.signal(signal.SIGTERM, _interrupted)
    spawned: list[ProcessHandle] = []
    run = Stopwatch()
    try:
        rows = asyncio.run(
            run_matrix(scale, work=work, repo_root=REPO, spawned=spawned, only=only, say=_say)
        )
    finally:
        for handle in spawned:  # a last sweep, whatever happened above
            if processes.is_running(handle):
                processes.resume(handle)
                processes.stop(handle)
    total = run.seconds
    print()
    print(table(rows))
    passed = sum(row.passed for row in rows)
    print(f"\n{passed}/{len(rows)} rows passed in {total:.0f} s; logs in {work}")
    write_results(
        "chaos",
        [row.to_json() for row in rows],
        scale="quick" if args.quick else "full",
        total_seconds=round(total, 1),
        passed=passed == len(rows),
    )
    return 0 if rows and passed == len(rows) else 1


def _say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
