"""
Service plumbing shared by the hub and the analysis node.
"""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger


class OrderedMultiService(MultiService):
    """
    A MultiService that starts its children in order, each after the one
    before has finished starting, and stops them in reverse order, each
    after the one after it has stopped.

    Twisted's MultiService drops start Deferreds and stops children all at
    once; the hub needs collectors stopped before the pipeline drains, and
    the pipeline drained before the store closes.
    """

    log = Logger()

    def __init__(self, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor

    def startService(self):
        # Not MultiService.startService: that starts every child at once.
        self.running = 1
        self.started = ensureDeferred(self._start())
        self.started.addErrback(self._start_failed)
        return self.started

    async def _start(self) -> None:
        for child in list(self):
            await maybeDeferred(child.startService)

    def _start_failed(self, failure):
        # A hub without its store or its port is no hub: stop, loudly.
        from monitor.config import ConfigProblem

        if failure.check(ConfigProblem):
            # Something to change in the configuration: one line, no traceback.
            self.log.critical("{problem}", problem=str(failure.value))
        else:
            self.log.failure("could not start the service {name}", failure, name=self.name)
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)
        return None

    def stopService(self):
        self.running = 0
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                self.log.failure("error stopping {child}", child=getattr(child, "name", child))


class InFlight:
    """
    Count work in flight, so that a service's C{stopService} can wait until
    everything it handed out has finished before it closes what that work
    uses (a thread pool, worker processes, database connections).
    """

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[Deferred] = []

    def track(self, d: Deferred) -> Deferred:
        """
        Count C{d} until it fires; returns C{d}.  Add it first in C{d}'s
        chain, so the count is right before the caller sees the result.
        """
        self.count += 1
        return d.addBoth(self._done)

    def _done(self, result):
        self.count -= 1
        if not self.count:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.called:  # a waiter may have timed out
                    waiter.callback(None)
        return result

    def idle(self) -> Deferred:
        """
        A Deferred that fires once nothing is in flight.
        """
        if not self.count:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        return d
