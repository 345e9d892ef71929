"""``rapport-respond`` (and ``python -m rapport.respond``): serve, or check templates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rapport.common.app import run_service
from rapport.respond.app import create_app
from rapport.respond.settings import RespondSettings
from rapport.respond.templates import builtin_templates_text, check_file


def templates_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rapport-respond templates", description="Reply templates."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a templates YAML file")
    check.add_argument("file", type=Path)
    sub.add_parser("show", help="print the built-in templates (a starting point)")
    args = parser.parse_args(argv)
    if args.command == "show":
        print(builtin_templates_text(), end="")
        return 0
    problems = check_file(args.file)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"{args.file}: ok")
    return 1 if problems else 0


def main() -> None:
    """``rapport-respond`` serves; ``rapport-respond templates check FILE`` validates."""
    if sys.argv[1:2] == ["templates"]:
        raise SystemExit(templates_cli(sys.argv[2:]))
    run_service(RespondSettings, create_app)
