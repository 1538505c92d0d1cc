"""
A single-writer queue: writes that must reach the store in the order they
happened, each retried until the store takes it.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from monitor.backoff import Backoff

__all__ = ["WriteQueue"]


class WriteQueue:
    """
    Writes run one after another in the order submitted, each retried
    (with doubling delays up to C{cap}) until it succeeds: incident rows,
    notifications and attempts reach the store in the order they happened,
    and a failing store delays them but never drops them while the hub
    runs.  Once C{stopping}, a write is given up after three tries.
    """

    log = Logger()

    def __init__(self, reactor, first: float = 0.5, cap: float = 30.0) -> None:
        self.reactor = reactor
        self.first = first
        self.cap = cap
        self._queue: deque = deque()
        self._busy = False
        self.stopping = False

    def submit(self, write, *args) -> Deferred:
        """
        Call C{write(*args)} (a store method that returns a Deferred) after
        everything submitted before; fires with its result once committed.
        """
        d = Deferred()
        self._queue.append((write, args, d))
        if not self._busy:
            self._busy = True
            ensureDeferred(self._drain()).addErrback(lambda f: self.log.failure("store writes stopped", f))
        return d

    def barrier(self) -> Deferred:
        """
        Fires once everything submitted so far is written.
        """
        if not self._queue:
            return succeed(None)
        done = Deferred()
        self._queue[-1][2].addBoth(lambda result: (done.callback(None), result)[1])
        return done

    async def _drain(self) -> None:
        try:
            while self._queue:
                write, args, d = self._queue[0]
                backoff, tries = Backoff(first=self.first, cap=self.cap, jitter=0.0), 0
                while True:
                    try:
                        result = await maybeDeferred(write, *args)
                    except Exception as e:
                        tries += 1
                        if self.stopping and tries >= 3:
                            self.log.error("giving up a store write at shutdown: {error}", error=e)
                            self._queue.popleft()
                            d.errback(e)
                            break
                        delay = backoff.next()
                        self.log.error(
                            "could not write to the store ({error}); retrying in {delay}s", error=e, delay=delay
                        )
                        await deferLater(self.reactor, delay)
                        continue
                    self._queue.popleft()
                    d.callback(result)
                    break
        finally:
            self._busy = False
