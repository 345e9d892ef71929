"""``make demo``: start the local mesh, show that every part answers, stop it.

The services are still skeletons (issues 3-6 fill them in), so for now the
demo proves the foundation: real infrastructure and the four service
processes come up, answer their probes, and go away again leaving nothing
running. ``KEEP=1`` leaves the mesh up and prints its URLs and dev API key.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rapport.devstack import processes, stack
from rapport.devstack.servers import ServerStartError


def _print_status(home: Path) -> bool:
    rows = stack.status(home) or []
    print(f"\n{'PART':<10} {'PID':>8}  {'ANSWERS':<10} URL")
    for row in rows:
        pid = str(row.pid) if row.pid else "external"
        print(f"{row.name:<10} {pid:>8}  {row.answer:<10} {row.url}")
    return bool(rows) and all(row.running and row.answer == "ok" for row in rows)


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
