"""API keys: ``Authorization: Bearer <key>``, stored hashed, each with a tenant and scopes.

Keys are 192-bit random tokens (``rpk_<env>_<base64url>``), so a plain SHA-256
is the right hash: slow password hashes exist to protect low-entropy secrets,
and would cost milliseconds on every request here. The store holds only
hashes; it is loaded from ``RAPPORT_API_KEYS`` (a JSON list) and/or
``RAPPORT_API_KEYS_FILE`` (the same JSON in a mounted Secret)::

    [{"id": "acme-web", "sha256": "<hex>", "tenant": "acme",
      "scopes": ["events:write"], "rate_per_s": 2000, "burst": 4000}]

``rapport-keys new --tenant acme --scope events:write`` prints a new key and
its entry.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import HTTPConnection

from rapport.common.identifiers import Identifier
from rapport.common.problems import ProblemError

SCOPE_EVENTS_WRITE = "events:write"
SCOPE_PROFILES_READ = "profiles:read"
SCOPE_PROFILES_WRITE = "profiles:write"
SCOPE_RECOMMEND_INVOKE = "recommend:invoke"
SCOPE_RESPOND_INVOKE = "respond:invoke"
SCOPE_KNOWLEDGE_READ = "knowledge:read"
SCOPE_KNOWLEDGE_WRITE = "knowledge:write"
SCOPE_EXPERIMENTS_READ = "experiments:read"
SCOPE_CATALOG_WRITE = "catalog:write"
ALL_SCOPES = (
    SCOPE_EVENTS_WRITE,
    SCOPE_PROFILES_READ,
    SCOPE_PROFILES_WRITE,
    SCOPE_RECOMMEND_INVOKE,
    SCOPE_RESPOND_INVOKE,
    SCOPE_KNOWLEDGE_READ,
    SCOPE_KNOWLEDGE_WRITE,
    SCOPE_EXPERIMENTS_READ,
    SCOPE_CATALOG_WRITE,
)
BEARER_CHALLENGE = 'Bearer realm="rapport"'


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_keys: SecretStr | None = Field(
        None,
        validation_alias="RAPPORT_API_KEYS",
        description="JSON list of hashed key entries.",
    )
    api_keys_file: Path | None = Field(
        None,
        validation_alias="RAPPORT_API_KEYS_FILE",
        description="File holding the same JSON list (a mounted Secret).",
    )


class ApiKey(BaseModel):
    """One stored key: never the key itself, only its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    tenant: Identifier
    scopes: frozenset[str]
    rate_per_s: Annotated[float, Field(gt=0)] | None = None
    burst: Annotated[int, Field(gt=0)] | None = None


_KEY_LIST = TypeAdapter(list[ApiKey])


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_key(env: str = "live") -> str:
    return f"rpk_{env}_{secrets.token_urlsafe(24)}"


class ApiKeyStore:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_hash = {key.sha256: key for key in keys}

    def __len__(self) -> int:
        return len(self._by_hash)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> ApiKeyStore:
        keys: list[ApiKey] = []
        if settings.api_keys is not None:
            keys += _KEY_LIST.validate_json(settings.api_keys.get_secret_value())
        if settings.api_keys_file is not None:
            keys += _KEY_LIST.validate_json(settings.api_keys_file.read_bytes())
        return cls(keys)

    def authenticate(self, token: str) -> ApiKey | None:
        digest = hash_key(token)
        key = self._by_hash.get(digest)
        # The dict lookup is on a hash of the token; compare again in constant time anyway.
        if key is not None and hmac.compare_digest(key.sha256, digest):
            return key
        return None


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        detail=detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="invalid_token"'},
    )


# Declares the scheme in OpenAPI; errors are ours (problem+json), hence auto_error=False.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A Rapport API key: `Authorization: Bearer rpk_...`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticate(
    store: ApiKeyStore, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> ApiKey:
    """The caller's key, if it is valid and grants ``scope``; else a 401 or 403 problem."""
    if credentials is None or not credentials.credentials.strip():
        raise _unauthorized("Send an API key as `Authorization: Bearer <key>`.")
    key = store.authenticate(credentials.credentials.strip())
    if key is None:
        raise _unauthorized("The API key is not valid.")
    if scope not in key.scopes:
        raise ProblemError(
            403,
            detail=f"This API key lacks the `{scope}` scope.",
            slug="forbidden",
            headers={"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="insufficient_scope"'},
        )
    return key


async def bearer_credentials(connection: HTTPConnection) -> HTTPAuthorizationCredentials | None:
    """A request's ``Authorization: Bearer`` credentials, read as the routes' dependency
    reads them (for an ASGI layer that serves a route ahead of FastAPI)."""
    return await _bearer(connection)


def require_scope(
    scope: str,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[ApiKey]]:
    """A dependency: ``Caller = Annotated[ApiKey, Depends(require_scope("events:write"))]``.

    The key store is ``app.state.api_keys``, built in the app's lifespan.
    """

    async def dependency(request: Request, credentials: Credentials) -> ApiKey:
        return authenticate(request.app.state.api_keys, credentials, scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


def key_entry(token: str, *, key_id: str, tenant: str, scopes: Iterable[str]) -> ApiKey:
    return ApiKey(id=key_id, sha256=hash_key(token), tenant=tenant, scopes=frozenset(scopes))


def main(argv: list[str] | None = None) -> None:
    """``rapport-keys new``: print a new key (once) and the entry to store."""
    parser = argparse.ArgumentParser(prog="rapport-keys", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="generate a key")
    new.add_argument("--tenant", required=True)
    new.add_argument("--id", dest="key_id", help="key id (default: <tenant>-<random>)")
    new.add_argument("--scope", action="append", choices=ALL_SCOPES, required=True)
    new.add_argument("--env", default="live", help="label inside the key, e.g. live or test")
    args = parser.parse_args(argv)
    token = generate_key(args.env)
    entry = key_entry(
        token,
        key_id=args.key_id or f"{args.tenant}-{secrets.token_hex(3)}",
        tenant=args.tenant,
        scopes=args.scope,
    )
    print(f"key (shown once): {token}")
    print("entry for RAPPORT_API_KEYS / RAPPORT_API_KEYS_FILE:")
    print(json.dumps(entry.model_dump(mode="json", exclude_none=True), sort_keys=True))
