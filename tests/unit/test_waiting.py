"""The polling helpers the tests and the chaos harness wait with."""

from __future__ import annotations

import itertools

import pytest

from rapport.devstack.waiting import eventually, wait_until

pytestmark = pytest.mark.unit


async def test_wait_until_returns_once_the_check_holds() -> None:
    calls = itertools.count(1)

    async def third_time() -> bool:
        return next(calls) >= 3

    waited = await wait_until(third_time, timeout_s=5, interval_s=0.001)
    assert waited is not None
    assert next(calls) == 4


async def test_wait_until_gives_none_after_the_timeout() -> None:
    async def never() -> bool:
        return False

    assert await wait_until(never, timeout_s=0.05, interval_s=0.01) is None


async def test_only_the_named_exceptions_count_as_not_yet() -> None:
    calls = itertools.count(1)

    async def flaky() -> bool:
        if next(calls) < 3:
            raise ConnectionError("restarting")
        return True

    assert await wait_until(flaky, timeout_s=5, interval_s=0.001, retry_on=(OSError,)) is not None

    async def down() -> bool:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await wait_until(down, timeout_s=5, interval_s=0.001)


async def test_eventually_fails_the_test_on_timeout() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"not reached in 0\.05 s"):
        await eventually(never, timeout_s=0.05, interval_s=0.01)
