"""
What collectors of real networks share: retry delays, stall detection,
framing of long-lived streams, and an HTTP client owned by the collector.

Everything takes the reactor (or a clock) as an argument, so tests drive
time with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

from twisted.internet.defer import DeferredList
from twisted.web.client import Agent, HTTPConnectionPool

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


class HTTPCollector(Collector):
    """
    A collector that talks HTTP.  It owns its connection pool and treq
    client (made in C{startService}, closed with a bounded wait in
    C{stopService}), so stopping one source never leaves sockets or timers
    behind, and nothing shares the global pool.
    """

    #: Seconds stopService waits for cached connections to close.
    CLOSE_TIMEOUT = 2.0

    def startService(self):
        import treq

        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = 2
        self.pool.cachedConnectionTimeout = 60
        self.http = treq.HTTPClient(Agent(self.reactor, pool=self.pool))
        super().startService()

    def stopService(self):
        super().stopService()
        d = self.pool.closeCachedConnections()
        d.addTimeout(self.CLOSE_TIMEOUT, self.reactor)
        d.addErrback(lambda f: None)
        return DeferredList([d])

    def headers(self, extra: Optional[dict] = None) -> dict:
        h = {"User-Agent": [USER_AGENT]}
        for k, v in (extra or {}).items():
            h[k] = [v]
        return h


__all__ = ["Backoff", "HTTPCollector", "LineFramer", "StallTimer", "USER_AGENT", "retry_after"]
