"""
What collectors that talk HTTP share: a connection pool owned by each
collector, bounded reading of polled bodies, and one reading of the rate
limits servers announce (C{x-rate-limit-*} on X, C{X-RateLimit-*} on
Mastodon and Reddit, C{RateLimit-*} on Bluesky, C{Retry-After} everywhere).

Everything takes the reactor (or a clock) as an argument, so tests drive
time with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, PotentialDataLoss, ResponseDone

from monitor.backoff import retry_after
from monitor.collect.base import Collector
from monitor.model import parse_time

#: Sent with every request: networks ask for a descriptive agent.
USER_AGENT = "monitor/0.1 (social media monitoring daemon)"


# --- rate limits -------------------------------------------------------------------

#: Header names of the remaining allowance and of the window's end, in the
#: spellings networks use (Twisted's Headers ignore case).
_REMAINING = (b"x-rate-limit-remaining", b"x-ratelimit-remaining", b"ratelimit-remaining")
_RESET = (b"x-rate-limit-reset", b"x-ratelimit-reset", b"ratelimit-reset")


def _first(headers, names) -> Optional[str]:
    for name in names:
        values = headers.getRawHeaders(name)
        if values:
            return values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]
    return None


def _reset_time(value: str) -> Optional[float]:
    """
    A window's end: unix seconds (X, Bluesky, some Mastodon forks) or an
    ISO 8601 time (Mastodon).
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            return parse_time(value)
        except (ValueError, TypeError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) else None


@dataclass
class Window:
    """
    One rate-limit window as the last response described it.
    """

    remaining: Optional[int] = None
    reset: Optional[float] = None


class RateLimits:
    """
    The rate-limit windows of one collector, by endpoint (C{key}), as its
    responses announce them.  A window used up is waited out until its
    reset (plus C{margin}, at most C{cap} seconds) instead of being asked
    again and refused; after a refusal (429) the server's C{Retry-After}
    decides, else the window's reset.
    """

    def __init__(self, clock, margin: float = 0.0, cap: Optional[float] = None) -> None:
        self.clock = clock
        self.margin = margin
        self.cap = cap
        self.windows: dict[str, Window] = {}

    def note(self, headers, key: str = "") -> Window:
        """
        Read a response's rate-limit headers into the window of C{key};
        what a response leaves out stays as it was.
        """
        window = self.windows.setdefault(key, Window())
        remaining = _first(headers, _REMAINING)
        if remaining is not None:
            try:
                value = float(remaining)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                window.remaining = int(value)
        reset = _first(headers, _RESET)
        if reset is not None:
            window.reset = _reset_time(reset)
        return window

    def _until_reset(self, window: Window) -> Optional[float]:
        now = self.clock.seconds()
        if window.reset is None or window.reset <= now:
            return None
        delay = window.reset - now + self.margin
        return delay if self.cap is None else min(delay, self.cap)

    def wait_before(self, key: str = "") -> Optional[float]:
        """
        Seconds to wait before asking C{key} again: until the reset of a
        used-up window; C{None} to go ahead.  Call L{forget} once waited.
        """
        window = self.windows.get(key)
        if window is None or window.remaining is None or window.remaining > 0:
            return None
        return self._until_reset(window)

    def forget(self, key: str = "") -> None:
        """
        The window of C{key} was waited out: ask again.
        """
        window = self.windows.get(key)
        if window is not None:
            window.remaining = None

    def retry_delay(self, headers, key: str = "") -> Optional[float]:
        """
        Seconds to wait after a refusal: C{Retry-After}, else until the
        window's reset; C{None} if the server said neither.
        """
        self.note(headers, key)
        wait = retry_after(_first(headers, (b"retry-after",)), self.clock.seconds())
        if wait is None:
            wait = self._until_reset(self.windows[key])
        return wait


# --- bodies --------------------------------------------------------------------------


class BodyTooLarge(Exception):
    """
    A response body grew past its limit; C{head} holds its first bytes.
    """

    def __init__(self, limit: int, head: bytes) -> None:
        super().__init__(f"response body larger than {limit} bytes")
        self.limit = limit
        self.head = head


class _BoundedBody(Protocol):
    def __init__(self, done: Deferred, max_size: int) -> None:
        self.done = done
        self.max_size = max_size
        self.size = 0
        self.chunks: list[bytes] = []

    def abort(self) -> None:
        # The body's transport is a producer: stopping it drops the
        # connection at once (a stalled peer never answers a polite close).
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.max_size:
            head = b"".join(self.chunks)[:1024] or data[:1024]
            self.chunks = []
            self.abort()
            self.done.errback(BodyTooLarge(self.max_size, head))
            return
        self.chunks.append(data)

    def connectionLost(self, reason) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def read_body(response, max_size: int, clock, timeout: Optional[float] = None) -> Deferred:
    """
    Read a polled response's whole body, but never more than C{max_size}
    bytes (L{BodyTooLarge}) nor for longer than C{timeout} seconds (a
    trickling server; L{TimeoutError}): treq's own C{timeout} only covers
    the wait for the headers.  Cancelling drops the connection.
    """
    done = Deferred(lambda d: proto.abort())
    proto = _BoundedBody(done, max_size)
    if timeout is not None:
        done.addTimeout(timeout, clock)
    response.deliverBody(proto)
    return done


# --- the collector --------------------------------------------------------------------


class NoResponse(Exception):
    """
    A request that got no response: refused, reset, unresolvable, or
    timed out waiting for the headers.  The message says which.
    """


class HTTPCollector(Collector):
    """
    A collector that talks HTTP.  It owns its connection pool and treq
    client (made in C{startService}, closed with a bounded wait in
    C{stopService}), so stopping one source never leaves sockets or timers
    behind, and nothing shares the global pool.
    """

    #: Seconds stopService waits for cached connections to close.
    CLOSE_TIMEOUT = 2.0

    #: Set before start to use another client instead of an own pool
    #: (tests hand in a C{treq.testing.StubTreq}).
    http_client = None

    def startService(self):
        from treq.client import HTTPClient

        if self.http_client is not None:
            self.pool, self.http = None, self.http_client
            return super().startService()
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = 2
        self.pool.cachedConnectionTimeout = 60
        self.http = HTTPClient(Agent(self.reactor, pool=self.pool))
        super().startService()

    def stopService(self):
        super().stopService()
        if self.pool is None:
            return None
        d = self.pool.closeCachedConnections()
        d.addTimeout(self.CLOSE_TIMEOUT, self.reactor)
        d.addErrback(lambda f: None)
        return DeferredList([d])

    async def request(self, method: str, url: str, timeout: float, **kwargs):
        """
        One request with this collector's client; its response (the body
        unread: C{unbuffered}, for L{read_body} or a L{LineStream}), or
        L{NoResponse} if none came within C{timeout} seconds.
        """
        d = self.http.request(method, url, unbuffered=True, **kwargs)
        d.addTimeout(timeout, self.reactor)
        try:
            return await d
        except CancelledError:
            raise
        except Exception as e:
            raise NoResponse(f"{type(e).__name__}: {e}") from e

    def headers(self, extra: Optional[dict] = None) -> dict:
        h = {"User-Agent": [USER_AGENT]}
        for k, v in (extra or {}).items():
            h[k] = [v]
        return h


__all__ = [
    "BodyTooLarge",
    "HTTPCollector",
    "NoResponse",
    "RateLimits",
    "USER_AGENT",
    "Window",
    "read_body",
]
