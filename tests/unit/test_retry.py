from __future__ import annotations

import pytest

from rapport.common.retry import idempotent_retry

pytestmark = pytest.mark.unit


async def call_with_retry(errors: list[Exception], attempts: int) -> int:
    """Raise ``errors`` one per attempt, then succeed; returns how many calls were made."""
    calls = 0
    async for attempt in idempotent_retry(attempts=attempts, initial_wait_s=0.001):
        with attempt:
            calls += 1
            if errors:
                raise errors.pop(0)
    return calls


async def test_retries_transient_errors_then_succeeds() -> None:
    errors: list[Exception] = [ConnectionResetError("blip"), TimeoutError()]
    assert await call_with_retry(errors, attempts=3) == 3


async def test_gives_up_after_the_last_attempt_with_the_original_error() -> None:
    errors: list[Exception] = [TimeoutError("first"), TimeoutError("second"), TimeoutError()]
    with pytest.raises(TimeoutError, match="second"):
        await call_with_retry(errors, attempts=2)
    assert len(errors) == 1, "exactly two attempts were made"


async def test_does_not_retry_errors_that_are_not_transient() -> None:
    errors: list[Exception] = [ValueError("bad input"), ValueError("never reached")]
    with pytest.raises(ValueError, match="bad input"):
        await call_with_retry(errors, attempts=5)
    assert len(errors) == 1, "exactly one attempt was made"
