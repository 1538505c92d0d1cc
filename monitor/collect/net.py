"""
What collectors of real networks share: retry delays, stall detection,
framing of long-lived streams, and an HTTP client owned by the collector.

Everything takes the reactor (or a clock) as an argument, so tests drive
time with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import random
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, PotentialDataLoss, ResponseDone

from monitor.collect.base import Collector

#: Sent with every request: networks ask for a descriptive agent.
USER_AGENT = "monitor/0.1 (social media monitoring daemon)"


class Backoff:
    """
    Retry delays: exponential (C{first}, doubling, up to C{cap}) or linear
    (C{first}, plus C{step} each time), each with random jitter so that many
    clients do not reconnect in step.  C{reset} after a success.
    """

    def __init__(
        self,
        first: float = 1.0,
        cap: float = 300.0,
        factor: float = 2.0,
        step: Optional[float] = None,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first, self.cap, self.factor, self.step, self.jitter = first, cap, factor, step, jitter
        self._rng = rng
        self.attempts = 0

    def next(self) -> float:
        """
        The delay before the next attempt.
        """
        n = self.attempts
        self.attempts += 1
        if self.step is not None:
            base = self.first + self.step * n
        else:
            base = self.first * self.factor**n
        base = min(base, self.cap)
        return base * (1 - self.jitter + 2 * self.jitter * self._rng())

    def reset(self) -> None:
        self.attempts = 0


class StallTimer:
    """
    Call C{on_stall} when C{touch} has not been called for C{timeout}
    seconds: a stream that sends nothing, not even keep-alives, is dead
    even if its TCP connection looks alive.
    """

    def __init__(self, clock, timeout: float, on_stall: Callable[[], None]) -> None:
        self.clock = clock
        self.timeout = timeout
        self.on_stall = on_stall
        self._call = None

    def start(self) -> None:
        self.stop()
        self._call = self.clock.callLater(self.timeout, self._fire)

    def touch(self) -> None:
        if self._call is not None and self._call.active():
            self._call.reset(self.timeout)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self.on_stall()


class LineFramer:
    """
    Split a byte stream into lines (C{\\n} or C{\\r\\n}), never holding more
    than C{max_length} bytes of one line: a longer line is reported to
    C{on_too_long} with its first bytes and skipped.
    """

    def __init__(
        self,
        on_line: Callable[[bytes], None],
        on_too_long: Callable[[bytes], None],
        max_length: int = 1 << 20,
    ) -> None:
        self.on_line = on_line
        self.on_too_long = on_too_long
        self.max_length = max_length
        self._buffer = b""
        self._skipping = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer + data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if self._skipping:
                self._skipping = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_length:
                self.on_too_long(line[:1024])
                continue
            self.on_line(line)
        rest = buffer[start:]
        if len(rest) > self.max_length:
            if not self._skipping:
                self.on_too_long(rest[:1024])
            self._skipping = True
            rest = b""
        self._buffer = rest

    @property
    def pending(self) -> bytes:
        """
        The unterminated bytes held so far (an incomplete last line).
        """
        return self._buffer


def retry_after(value, now: float) -> Optional[float]:
    """
    Seconds to wait from a C{Retry-After} value: delta seconds or an HTTP
    date.  C{None} if absent or unreadable.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def abort_body(transport) -> None:
    """
    Drop the connection a response body arrives on, at once: a stalled peer
    never answers a polite close (Scrapy's body canceller does the same).
    """
    producer = getattr(transport, "_producer", None)
    if producer is not None and hasattr(producer, "abortConnection"):
        producer.abortConnection()
    elif transport is not None:
        transport.stopProducing()


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

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.max_size:
            head = b"".join(self.chunks)[:1024] or data[:1024]
            self.chunks = []
            abort_body(self.transport)
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
    proto: _BoundedBody

    def cancel(d: Deferred) -> None:
        abort_body(proto.transport)

    done = Deferred(cancel)
    proto = _BoundedBody(done, max_size)
    if timeout is not None:
        done.addTimeout(timeout, clock)
    response.deliverBody(proto)
    return done


class LineStream(Protocol):
    """
    A long-lived response body read one line at a time, with backpressure:
    while lines wait for the reader the transport is paused, so a slow
    consumer holds at most one network read, never a growing buffer.  No
    bytes at all (not even keep-alives) for C{stall_timeout} seconds while
    the reader waits drops the connection (C{stalled} is then true).

    Give it to C{response.deliverBody}; then C{await stream.next()} until
    it gives C{None} (the end; C{reason} says why, C{pending} holds an
    unfinished last line).  Lines longer than C{max_length} go to
    C{on_too_long} with their first bytes.
    """

    def __init__(
        self,
        clock,
        stall_timeout: float,
        on_too_long: Callable[[bytes], None],
        max_length: int = 1 << 20,
    ) -> None:
        self.framer = LineFramer(self._line, on_too_long, max_length)
        self.stall = StallTimer(clock, stall_timeout, self._stalled)
        self.stalled = False
        self.reason = None
        self._lines: deque[bytes] = deque()
        self._waiter: Optional[Deferred] = None
        self._paused = False

    @property
    def pending(self) -> bytes:
        return self.framer.pending

    def connectionMade(self) -> None:
        self.stall.start()

    def _line(self, line: bytes) -> None:
        self._lines.append(line)

    def dataReceived(self, data: bytes) -> None:
        self.stall.touch()
        self.framer.feed(data)
        if self._lines and self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.callback(self._lines.popleft())
        if self._lines and self._waiter is None and not self._paused and self.reason is None:
            self._paused = True
            self.stall.stop()
            self.transport.pauseProducing()

    def next(self) -> Deferred:
        """
        The next line (bytes, without its line ending), or C{None} at the end.
        """
        if self._lines:
            d = Deferred()
            d.callback(self._lines.popleft())
            return d
        if self.reason is not None:
            d = Deferred()
            d.callback(None)
            return d
        self._waiter = Deferred(self._cancel)
        if self._paused:
            self._paused = False
            self.stall.start()
            self.transport.resumeProducing()
        return self._waiter

    def abort(self) -> None:
        """
        Drop the connection now.
        """
        if self.reason is None:
            abort_body(self.transport)

    def _cancel(self, d: Deferred) -> None:
        if self._waiter is d:
            self._waiter = None
        self.abort()

    def _stalled(self) -> None:
        self.stalled = True
        self.abort()

    def connectionLost(self, reason) -> None:
        self.stall.stop()
        self.reason = reason
        if self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.callback(None)


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

    def headers(self, extra: Optional[dict] = None) -> dict:
        h = {"User-Agent": [USER_AGENT]}
        for k, v in (extra or {}).items():
            h[k] = [v]
        return h


__all__ = [
    "Backoff",
    "BodyTooLarge",
    "HTTPCollector",
    "LineFramer",
    "LineStream",
    "StallTimer",
    "USER_AGENT",
    "abort_body",
    "read_body",
    "retry_after",
]
