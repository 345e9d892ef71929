"""RFC 9457 problem details (``application/problem+json``) for every error."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://rapport.dev/problems/"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path to the bad value, e.g. `item_id`.")
    reason: str
    index: int | None = Field(None, description="Position of the bad item in a batch.")


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


# OpenAI's error ``type`` for each status; its clients read ``error.type``, ``.code`` and
# ``.param`` from the body, and pick their exception class from the status.
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(body: Mapping[str, Any]) -> dict[str, Any]:
    """A problem document's ``error`` member in OpenAI's shape, for OpenAI-compatible routes."""
    status = int(body["status"])
    errors = body.get("errors") or []
    slug = str(body.get("type", "")).removeprefix(PROBLEM_TYPE_BASE)
    return {
        "message": body.get("detail") or body["title"],
        "type": _OPENAI_ERROR_TYPES.get(status, "api_error" if status >= 500 else "error"),
        "param": errors[0]["field"] if errors else None,
        "code": slug.replace("-", "_") if slug and slug != "about:blank" else None,
    }


class ProblemError(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        *,
        detail: str | None = None,
        title: str | None = None,
        slug: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = f"{PROBLEM_TYPE_BASE}{slug}" if slug else "about:blank"
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_response(
    request: Request | None,
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance: str | None = None,
) -> ProblemResponse:
    """A problem document; ``instance`` is the request's path (given, or the request's)."""
    body = Problem(
        type=type_,
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else instance,
        errors=list(errors) if errors else None,
    ).model_dump(mode="json", exclude_none=True)
    body.update(extra or {})
    if request is not None and request.url.path in openai_compatible_paths(request.app):
        body.setdefault("error", openai_error(body))
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def openai_compatible_paths(app: Any) -> frozenset[str]:
    """Routes whose problems also carry OpenAI's ``error`` member (see create_service_app)."""
    paths: frozenset[str] = getattr(app.state, "openai_compatible_paths", frozenset())
    return paths


def field_path(loc: Sequence[int | str], *, skip: int = 0) -> str:
    return ".".join(str(part) for part in loc[skip:])


def validation_field_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic errors as (field, reason); the leading ``body``/``query`` is dropped."""
    out = []
    for item in errors:
        loc = tuple(item.get("loc", ()))
        skip = 1 if loc and loc[0] in ("body", "query", "path", "header") else 0
        out.append(FieldError(field=field_path(loc, skip=skip) or "(root)", reason=item["msg"]))
    return out


def problem_error_response(
    request: Request | None, problem: ProblemError, *, instance: str | None = None
) -> ProblemResponse:
    """The document a raised :class:`ProblemError` answers with (handler or not)."""
    return problem_response(
        request,
        problem.status,
        title=problem.title,
        detail=problem.detail,
        type_=problem.type,
        errors=problem.errors,
        headers=problem.headers,
        extra=problem.extra,
        instance=instance,
    )


def unexpected_error_response(
    request: Request | None, exc: Exception, *, instance: str | None = None
) -> ProblemResponse:
    """Logged, and answered with a 500 that says nothing of the cause."""
    log.exception("unhandled error", exc_info=exc)
    return problem_response(request, 500, detail="An unexpected error occurred.", instance=instance)


async def _problem_error_handler(request: Request, exc: Exception) -> ProblemResponse:
    return problem_error_response(request, cast(ProblemError, exc))  # for ProblemError only


def _invalid_request(request: Request, errors: list[FieldError]) -> ProblemResponse:
    return problem_response(
        request,
        422,
        title="Invalid request",
        detail="The request does not match the schema; see `errors`.",
        type_=f"{PROBLEM_TYPE_BASE}validation",
        errors=errors,
    )


async def _validation_handler(request: Request, exc: Exception) -> ProblemResponse:
    errors = validation_field_errors(cast(RequestValidationError, exc).errors())
    return _invalid_request(request, errors)


def allowed_methods(request: Request) -> str:
    """Every method of the path, for a 405's ``Allow``: Starlette names only those of the
    first route on it, and a path may have a route per method."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _http_handler(request: Request, exc: Exception) -> ProblemResponse:
    http_error = cast(StarletteHTTPException, exc)
    if isinstance(http_error.__cause__, UnicodeDecodeError):
        # FastAPI's 400 for a body that is not UTF-8; one that is not JSON is a 422.
        return _invalid_request(request, [FieldError(field="(root)", reason="not UTF-8 JSON")])
    headers = dict(http_error.headers or {})
    if http_error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        headers["Allow"] = allowed_methods(request)
    return problem_response(
        request,
        http_error.status_code,
        detail=str(http_error.detail) if http_error.detail else None,
        headers=headers,
    )


async def _unhandled_handler(request: Request, exc: Exception) -> ProblemResponse:
    return unexpected_error_response(request, exc)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json bodies."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
        for status in statuses
    }
