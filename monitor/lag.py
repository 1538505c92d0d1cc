"""
How long the reactor thread is kept from other work: a heartbeat every
C{interval} seconds measures, per beat, the wall time it was late and the
CPU time the reactor thread spent meanwhile.  The smaller of the two is a
stall caused by this process (a late beat with little CPU used is the
machine being busy elsewhere; CPU used without lateness is just work).  It
goes to the C{monitor_reactor_stall_seconds} histogram, so a stall is
visible in production, and the fuzz tests read it to prove that no request
holds the reactor for more than 100 ms.
"""

from __future__ import annotations

import time
from typing import Optional

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

__all__ = ["ReactorLag"]


class ReactorLag(Service):
    """
    The heartbeat; C{histogram} is observed with each beat's stall.

    @ivar worst: the longest stall seen (seconds).
    """

    name = "reactor-lag"

    def __init__(
        self, reactor, histogram=None, interval: float = 0.02, wall=time.monotonic, cpu=time.thread_time
    ) -> None:
        self.reactor = reactor
        self.histogram = histogram
        self.interval = interval
        self.worst = 0.0
        self._wall = wall
        self._cpu = cpu
        self._last: Optional[tuple[float, float]] = None
        self._loop: Optional[LoopingCall] = None

    def startService(self):
        super().startService()
        self._last = None
        self._loop = LoopingCall(self._beat)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _beat(self) -> None:
        now = (self._wall(), self._cpu())
        if self._last is not None:
            late = max(0.0, now[0] - self._last[0] - self.interval)
            stall = min(late, now[1] - self._last[1])
            self.worst = max(self.worst, stall)
            if self.histogram is not None:
                self.histogram.observe(stall)
        self._last = now
