"""Outbound HTTP through one pooled aiohttp session per service.

aiohttp rather than httpx: one hop measured 0.34-0.48 ms against 1.3-1.7 ms
(../shared/INFRA.md); the hot fan-out paths re-measure it in their benchmarks.
"""

from __future__ import annotations

import aiohttp


def create_http_session(
    *, total_timeout_s: float = 2.0, connect_timeout_s: float = 0.5, pool_size: int = 100
) -> aiohttp.ClientSession:
    """A session that reuses connections. Create it inside a running event loop."""
    connector = aiohttp.TCPConnector(
        limit=pool_size, limit_per_host=pool_size, keepalive_timeout=30, ttl_dns_cache=60
    )
    timeout = aiohttp.ClientTimeout(total=total_timeout_s, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)
