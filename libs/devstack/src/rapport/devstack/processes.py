"""Start, identify and stop the processes the dev stack owns.

Each process is started in a new session (its own process group), so stopping
it also stops what it spawned (Triton's backend stubs) and nothing else. A
handle records the PID with the process's start time, so a PID that the
kernel has reused for somebody else's process is never signalled.

The start time is read on a clock that never jumps (:func:`start_time`):
psutil's ``create_time`` adds the boot time from ``/proc/stat``, which moves
whenever the wall clock is stepped (as it is on this kind of VM), and a handle
that stops matching its own process would leave the process running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil


def start_time(pid: int) -> float:
    """When ``pid`` started: seconds after boot on Linux (the kernel's ``starttime``),
    psutil's ``create_time`` elsewhere. Raises ``psutil.NoSuchProcess`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return psutil.Process(pid).create_time()
    # Field 22 of proc(5); counting starts after the command name, which may hold spaces.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessHandle:
    name: str
    pid: int
    create_time: float  # start_time(pid) when spawned
    argv: tuple[str, ...]
    log_path: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessHandle:
        return cls(
            name=data["name"],
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            argv=tuple(data["argv"]),
            log_path=data["log_path"],
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(
    name: str,
    argv: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessHandle:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by us, never a shell string
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return ProcessHandle(
        name=name,
        pid=proc.pid,
        create_time=start_time(proc.pid),
        argv=tuple(argv),
        log_path=str(log_path),
    )


def _process(handle: ProcessHandle) -> psutil.Process | None:
    """The live process behind a handle, or None if it is gone or the PID was reused."""
    try:
        proc = psutil.Process(handle.pid)
        if abs(start_time(handle.pid) - handle.create_time) > 0.001:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pid, os.WNOHANG)
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def is_running(handle: ProcessHandle) -> bool:
    return _process(handle) is not None


def cpu_seconds(handle: ProcessHandle) -> float:
    """CPU time (user + system) of the process and its live descendants (Triton's
    Python-backend stubs are children of tritonserver); 0 when it is gone."""
    proc = _process(handle)
    if proc is None:
        return 0.0
    total = 0.0
    for member in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def _signal_group(handle: ProcessHandle, sig: signal.Signals) -> None:
    # Our processes lead their own group (start_new_session); never signal any other group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(handle.pid) == handle.pid:
            os.killpg(handle.pid, sig)
        else:
            os.kill(handle.pid, sig)


def stop(handle: ProcessHandle, *, timeout_s: float = 10.0) -> bool:
    """SIGTERM the process group, then SIGKILL after ``timeout_s``. True if it was running."""
    proc = _process(handle)
    if proc is None:
        return False
    try:
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    _signal_group(handle, signal.SIGTERM)
    _, alive = psutil.wait_procs([proc, *children], timeout=timeout_s)
    if alive:
        _signal_group(handle, signal.SIGKILL)
        for straggler in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                straggler.kill()
        psutil.wait_procs(alive, timeout=5)
    return True


def kill(handle: ProcessHandle, *, timeout_s: float = 10.0) -> bool:
    """SIGKILL the process group at once (a crash, for fault tests). True if it was running."""
    proc = _process(handle)
    if proc is None:
        return False
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [proc]
    _signal_group(handle, signal.SIGKILL)
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(family, timeout=timeout_s)
    return True


def pause(handle: ProcessHandle) -> None:
    """SIGSTOP, for fault tests (a broker that accepts connections but never answers)."""
    _signal_group(handle, signal.SIGSTOP)


def resume(handle: ProcessHandle) -> None:
    _signal_group(handle, signal.SIGCONT)


def log_tail(handle: ProcessHandle, lines: int = 30) -> str:
    try:
        text = Path(handle.log_path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
