"""``rapport-dev up | down | status | logs``: the local mesh in the background."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rapport.devstack import models, stack
from rapport.devstack.servers import ServerStartError


def _cmd_up(args: argparse.Namespace) -> int:
    config = stack.StackConfig.from_env(args.home)
    config.with_triton = not args.no_triton
    config.with_services = not args.no_services
    if args.model_repository:
        config.model_repository = args.model_repository
    if args.experiments is not None:
        config.experiments_file = stack.experiments_choice(args.experiments)
    try:
        if config.with_triton and config.model_repository is None:
            config.model_repository = models.ensure_repository()
        data = stack.up(config)
    except (stack.StackError, ServerStartError, models.ModelBuildError) as exc:
        print(f"rapport-dev up: {exc}", file=sys.stderr)
        return 1
    print(f"stack is up; described in {stack.stack_path(args.home)}")
    stack.print_endpoints(data)
    print(f"  {'experiments':<14} {data['experiments'] or 'none'}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    stopped = stack.down(args.home)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    rows = stack.status(args.home)
    if rows is None:
        print(f"no stack: {stack.stack_path(args.home)} does not exist (run `make up`)")
        return 1
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print(f"{'NAME':<10} {'PID':>8}  {'PROCESS':<8} {'ANSWERS':<24} URL")
        for row in rows:
            pid = str(row.pid) if row.pid else "external"
            proc = "running" if row.running else "GONE"
            print(f"{row.name:<10} {pid:>8}  {proc:<8} {row.answer:<24} {row.url}")
    healthy = all(row.running and row.answer == "ok" for row in rows)
    return 0 if healthy else 1


def _cmd_logs(args: argparse.Namespace) -> int:
    log_dir = args.home / "logs"
    files = sorted(log_dir.glob(f"{args.name or '*'}.log"))
    if not files:
        print(f"no logs under {log_dir}", file=sys.stderr)
        return 1
    for path in files:
        lines = path.read_text(errors="replace").splitlines()[-args.lines :]
        print(f"==> {path} <==")
        print("\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rapport-dev", description=__doc__)
    parser.add_argument(
        "--home", type=Path, default=Path(".rapport"), help="state directory (default .rapport)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start infrastructure and services in the background")
    up.add_argument(
        "--no-triton",
        action="store_true",
        help="skip Milvus and Triton: no knowledge, no memory (starts in ~10 s)",
    )
    up.add_argument("--no-services", action="store_true", help="infrastructure only")
    up.add_argument("--model-repository", type=Path, help="Triton model repository")
    up.add_argument(
        "--experiments",
        metavar="PATH|off",
        help=f"the experiments respond and profile run (${stack.EXPERIMENTS_VARIABLE}; "
        "default: devstack's experiments.yaml)",
    )
    up.set_defaults(func=_cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=_cmd_down)
    status = sub.add_parser("status", help="check every server answers; exit 1 if not")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)
    logs = sub.add_parser("logs", help="print the tail of the logs")
    logs.add_argument("name", nargs="?", help="one server or service")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.set_defaults(func=_cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
