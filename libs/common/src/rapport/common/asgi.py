"""Layers around a FastAPI app's whole middleware stack."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp


def wrap_middleware_stack(app: FastAPI, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Apply ``wrap`` to the stack Starlette builds (on the first request), outside every
    layer ``add_middleware`` can reach: the error handler and the tracing middleware
    included. The last call wraps outermost."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return wrap(build())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
