"""Where each Python process's CPU goes under load: py-spy samples, summarised by library.

``record`` attaches ``py-spy record`` (raw, collapsed stacks; idle threads are not
sampled, so samples are proportional to CPU time) to each server of a stack for the
length of one load level; Triton is recorded with ``--subprocesses``, which reaches
its Python-backend stubs (Triton's own C++ is not Python and is not seen). ``summarise``
reads a collapsed-stack file and gives, for each library, its share of the samples:

- ``self``: the innermost Python frame is in that library (where the CPU is spent);
- ``inclusive``: that library is anywhere on the stack (what it costs with what it calls).

py-spy installs from PyPI (``requirements-dev.txt``); it needs ptrace rights on the
processes (root, or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rapport.devstack.stack import Stack

# py-spy (--full-filenames) names a frame "function (/path/to/module.py:line)".
FRAME = re.compile(r" \((?P<file>[^()]+?)(?::\d+)?\)$")
SITE = re.compile(r"(?:site|dist)-packages/(?P<package>[A-Za-z0-9_]+)")
RAPPORT = re.compile(r"/src/rapport/(?P<part>[a-z_]+)/")
STDLIB = re.compile(r"/lib/python3\.\d+/(?P<module>[A-Za-z0-9_]+)")
UNKNOWN = "other"


def library(frame: str) -> str:
    """A frame's library: its site package, ``rapport.<part>``, or its stdlib module."""
    match = FRAME.search(frame)
    if match is None:
        return UNKNOWN
    path = match.group("file")
    if site := SITE.search(path):
        return site.group("package")
    if rapport := RAPPORT.search(path):
        return f"rapport.{rapport.group('part')}"
    if stdlib := STDLIB.search(path):
        return stdlib.group("module")
    return Path(path).stem or UNKNOWN


@dataclass(frozen=True)
class Summary:
    samples: int
    self_share: dict[str, float]  # library -> share of samples whose leaf is in it
    inclusive_share: dict[str, float]  # library -> share of samples that pass through it

    def top(self, n: int = 8) -> dict[str, dict[str, float]]:
        ranked = sorted(self.self_share.items(), key=lambda kv: -kv[1])[:n]
        return {
            lib: {"self": share, "inclusive": self.inclusive_share.get(lib, share)}
            for lib, share in ranked
        }


def summarise(collapsed: str) -> Summary:
    """The per-library shares of one py-spy raw (collapsed-stack) output."""
    own: Counter[str] = Counter()
    through: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # py-spy puts a "process ..." / "thread ..." frame first with --subprocesses/threads
        libraries = [library(f) for f in frames if "(" in f]
        if not libraries:
            continue
        total += count
        own[libraries[-1]] += count
        for name in set(libraries):
            through[name] += count
    if total == 0:
        return Summary(0, {}, {})
    return Summary(
        samples=total,
        self_share={k: round(v / total, 3) for k, v in own.items()},
        inclusive_share={k: round(v / total, 3) for k, v in through.items()},
    )


def option(parser: argparse.ArgumentParser, what: str) -> None:
    """A bench's ``--py-spy DIR`` option (None when not given): where to record ``what``."""
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help=what)


def python_servers(stack: Stack) -> dict[str, int]:
    """The servers of ``stack`` py-spy can read: all but the broker and Redis (Rust and C)."""
    return {
        s.spec.name: s.handle.pid for s in stack.running if s.spec.name not in ("kafka", "redis")
    }


def binary() -> str:
    """The py-spy of this environment (``requirements-dev.txt``), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy") or "py-spy"


def record(
    pids: Mapping[str, int],
    seconds: float,
    out_dir: Path,
    *,
    subprocesses: frozenset[str] = frozenset({"triton"}),
    rate: int = 97,
) -> dict[str, subprocess.Popen[bytes]]:
    """Start one ``py-spy record`` per process; each stops by itself after ``seconds``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    running = {}
    for name, pid in pids.items():
        argv = [
            binary(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",  # do not pause the process being measured
            "--full-filenames",
            "--output",
            str(out_dir / f"{name}.txt"),
        ]
        if name in subprocesses:
            argv.append("--subprocesses")
        running[name] = subprocess.Popen(  # noqa: S603 - argv built here
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    return running


def collect(
    running: Mapping[str, subprocess.Popen[bytes]], out_dir: Path, timeout_s: float = 60.0
) -> dict[str, dict[str, dict[str, float]]]:
    """Wait for the recorders, then each process's top libraries (empty when py-spy failed)."""
    tops = {}
    for name, proc in running.items():
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
        path = out_dir / f"{name}.txt"
        text = path.read_text() if path.is_file() else ""
        tops[name] = summarise(text).top()
    return tops
