"""
The HTTP client the Slack and webhook notifiers share: one connection pool
on the injected reactor, owned by the outbox, closed within a bounded time
when it stops (closing cached connections is known to hang).
"""

from __future__ import annotations

from typing import Optional

import treq
from treq.client import HTTPClient as TreqClient
from twisted.internet.defer import Deferred, succeed
from twisted.web.client import Agent, HTTPConnectionPool

__all__ = ["HTTPClient", "USER_AGENT", "read_body"]

USER_AGENT = b"monitor-alerts/0.1 (+https://github.com/monitor)"

#: Most bytes of a response body read (a receiver's answer is a word).
MAX_BODY = 64 * 1024


class HTTPClient:
    """
    A treq client with its own pool.  C{start} and C{stop} follow the
    outbox service.
    """

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.pool: Optional[HTTPConnectionPool] = None
        self._client: Optional[TreqClient] = None

    def start(self) -> None:
        if self._client is None:
            self.pool = HTTPConnectionPool(self.reactor, persistent=True)
            self.pool.maxPersistentPerHost = 2
            self.pool.cachedConnectionTimeout = 60
            self._client = TreqClient(Agent(self.reactor, pool=self.pool))

    @property
    def client(self) -> TreqClient:
        self.start()
        return self._client

    def post(self, url: str, body: bytes, headers: dict, timeout: float) -> Deferred:
        headers = dict(headers)
        headers.setdefault(b"User-Agent", [USER_AGENT])
        return self.client.post(url, data=body, headers=headers, timeout=timeout, unbuffered=True)

    def stop(self, within: float = 2.0) -> Deferred:
        pool, self.pool, self._client = self.pool, None, None
        if pool is None:
            return succeed(None)
        d = pool.closeCachedConnections()
        d.addTimeout(within, self.reactor, onTimeoutCancel=lambda result, timeout: None)
        d.addErrback(lambda failure: None)
        return d


async def read_body(response, limit: int = MAX_BODY) -> bytes:
    """
    Up to C{limit} bytes of a response body; the rest is dropped.
    """
    chunks: list[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        if size < limit:
            chunks.append(data[: limit - size])
        size += len(data)

    try:
        await treq.collect(response, collect)
    except Exception:
        # A body cut short still tells us the status; keep what came.
        pass
    return b"".join(chunks)
