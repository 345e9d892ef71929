from __future__ import annotations

import uuid

import pytest

from rapport.common.cache import create_redis, ping_redis
from rapport.common.settings import RedisSettings

pytestmark = pytest.mark.integration


async def test_pipeline_round_trip(redis_settings: RedisSettings) -> None:
    client = create_redis(redis_settings, client_name="rapport-tests")
    key = f"t:{uuid.uuid4().hex}"
    try:
        await ping_redis(client)
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(f"{key}:h", mapping={"a": "1", "b": "2"})
            pipe.zincrby(f"{key}:z", 3, "m-1")
            pipe.zincrby(f"{key}:z", 5, "m-2")
            pipe.set(f"{key}:nx", "first", nx=True, ex=60)
            pipe.set(f"{key}:nx", "second", nx=True, ex=60)
            pipe.expire(f"{key}:h", 60)
            results = await pipe.execute()
        assert results == [2, 3.0, 5.0, True, None, True]
        assert await client.hgetall(f"{key}:h") == {b"a": b"1", b"b": b"2"}
        assert await client.zrevrange(f"{key}:z", 0, -1, withscores=True) == [
            (b"m-2", 5.0),
            (b"m-1", 3.0),
        ]
        assert await client.get(f"{key}:nx") == b"first"
        assert 0 < await client.ttl(f"{key}:nx") <= 60
    finally:
        await client.delete(f"{key}:h", f"{key}:z", f"{key}:nx")
        await client.aclose()
