"""NVIDIA Triton from the ``nvidia-pytriton`` wheel, in its own virtualenv.

``nvidia-pytriton`` pins ``numpy<2`` and the server never imports our code, so
it lives in ``.venv-triton`` (``make install`` creates it from
``constraints-triton.txt``). Model code in the Python backend runs with that
venv's interpreter and packages.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from rapport.devstack.servers import ServerSpec, ServerStartError, probe_http_ok

TRITON_VENV_ENV = "RAPPORT_TRITON_VENV"
TRITON_VENV_DIRNAME = ".venv-triton"


def find_triton_venv(start: Path | None = None) -> Path:
    """``$RAPPORT_TRITON_VENV``, else ``.venv-triton`` in this directory or a parent."""
    configured = os.environ.get(TRITON_VENV_ENV)
    if configured:
        return Path(configured)
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / TRITON_VENV_DIRNAME
        if candidate.is_dir():
            return candidate
    raise ServerStartError(
        f"no {TRITON_VENV_DIRNAME} found from {here} upwards and {TRITON_VENV_ENV} is unset; "
        "run `make install`"
    )


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise ServerStartError(f"{venv} has no site-packages")
    return found[-1]


def prepare_triton(venv: Path) -> tuple[Path, Path, dict[str, str]]:
    """The tritonserver binary, its backend directory and the env it needs.

    Copies the Python backend stub that matches the venv's Python into the
    backend directory, where tritonserver looks for it (idempotent).
    """
    site = _site_packages(venv)
    server_root = site / "pytriton" / "tritonserver"
    binary = server_root / "bin" / "tritonserver"
    if not binary.exists():
        raise ServerStartError(f"{binary} is missing; is nvidia-pytriton installed in {venv}?")
    py_version = site.parent.name.removeprefix("python")
    stub_src = server_root / "python_backend_stubs" / py_version / "triton_python_backend_stub"
    stub_dst = server_root / "backends" / "python" / "triton_python_backend_stub"
    if not stub_dst.exists():
        shutil.copy2(stub_src, stub_dst)
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(
            filter(None, [str(site / "nvidia_pytriton.libs"), os.environ.get("LD_LIBRARY_PATH")])
        ),
        # The stub runs `python` from PATH: it must be the Triton venv's, with numpy<2.
        "PATH": os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]),
        "VIRTUAL_ENV": str(venv),
    }
    return binary, server_root / "backends", env


def smoke_repository() -> Path:
    """A tiny model repository shipped with devstack, for tests and a bare `up`."""
    return Path(str(resources.files("rapport.devstack") / "smoke_repository"))


def triton_spec(
    *,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    model_repository: Path,
    venv: Path | None = None,
    otlp_traces_url: str | None = None,
    trace_export_delay_ms: int | None = None,
) -> ServerSpec:
    """``otlp_traces_url`` (``http://host:port/v1/traces``): Triton exports a span per
    request, model and compute step there, joined to the caller's W3C trace context,
    every ``trace_export_delay_ms`` (its batch span processor's default: 5 s)."""
    binary, backends, env = prepare_triton(venv or find_triton_venv())
    http_url = f"http://127.0.0.1:{http_port}"
    tracing = []
    if otlp_traces_url:
        tracing = [
            "--trace-config=mode=opentelemetry",
            "--trace-config=rate=1",
            "--trace-config=level=TIMESTAMPS",
            f"--trace-config=opentelemetry,url={otlp_traces_url.split('://', 1)[-1]}",
            "--trace-config=opentelemetry,resource=service.name=triton",
        ]
        if trace_export_delay_ms is not None:
            tracing.append(
                f"--trace-config=opentelemetry,bsp_schedule_delay={trace_export_delay_ms}"
            )
    return ServerSpec(
        name="triton",
        argv=[
            str(binary),
            f"--model-repository={model_repository}",
            f"--backend-directory={backends}",
            f"--http-port={http_port}",
            f"--grpc-port={grpc_port}",
            f"--metrics-port={metrics_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--allow-metrics=true",
            "--model-control-mode=poll",
            "--repository-poll-secs=5",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
            *tracing,
        ],
        probe=lambda: probe_http_ok(f"{http_url}/v2/health/ready"),
        urls={
            "triton_http": http_url,
            "triton_grpc": f"127.0.0.1:{grpc_port}",
            "triton_metrics": f"http://127.0.0.1:{metrics_port}/metrics",
        },
        env=env,
        start_timeout_s=120.0,
    )
