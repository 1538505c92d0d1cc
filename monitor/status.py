"""
What the hub's collectors, queue and analysis nodes are doing, said on the
bus every few seconds (L{monitor.bus.STATUS}), so that nobody else polls
them: the live channel relays it to browsers, and the sources page reads
the same snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from monitor.bus import STATUS, EventBus

__all__ = ["INTERVAL", "Status", "StatusService", "nodes_status"]

#: Seconds between two status events.
INTERVAL = 5.0

log = Logger()


@dataclass(frozen=True)
class Status:
    """
    One status event: when (reactor seconds), the period it closes, and the
    state (L{StatusService.snapshot}).
    """

    at: float
    interval: float
    state: dict[str, Any]


class StatusService(Service):
    """
    Publish the state of C{sources}, C{queue} and C{nodes} every
    C{interval} seconds on C{bus}.

    @param runs_on: C{runs_on(source name)}: the hub that runs a collector
        (L{monitor.cluster}), shown with its state as C{hub}; C{None}: this
        hub alone.
    @param nodes: what has C{status()} (the node pool), or C{None}.
    """

    name = "status"

    def __init__(
        self,
        bus: EventBus,
        reactor,
        sources: Sequence = (),
        queue=None,
        nodes=None,
        runs_on: Optional[Callable[[str], Optional[str]]] = None,
        interval: float = INTERVAL,
    ) -> None:
        self.bus = bus
        self.reactor = reactor
        self.sources = sources
        self.queue = queue
        self.nodes = nodes
        self.runs_on = runs_on
        self.interval = interval
        self._loop: Optional[LoopingCall] = None

    def startService(self):
        super().startService()
        if self.interval:
            self._loop = LoopingCall(self.publish)
            self._loop.clock = self.reactor
            d = self._loop.start(self.interval, now=False)
            d.addErrback(lambda f: log.failure("the status loop stopped", f))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def publish(self) -> None:
        """Say the state now (the loop calls this every C{interval})."""
        self.bus.publish(STATUS, Status(self.reactor.seconds(), self.interval, self.snapshot()))

    def snapshot(self) -> dict[str, Any]:
        """
        C{{"sources": [...], "nodes": ..., "queue": n}}: each collector's
        C{status()} (one that raises is logged and left out), the nodes'
        (L{nodes_status}) and the queue's depth (C{None} without a queue).
        """
        sources = []
        for source in self.sources:
            try:
                status = source.status()
                if self.runs_on is not None:
                    status["hub"] = self.runs_on(source.name)
                sources.append(status)
            except Exception:
                log.failure("status() of source {name} failed", name=getattr(source, "name", "?"))
        queued = self.queue.size() if self.queue is not None else None
        return {"sources": sources, "nodes": nodes_status(self.nodes), "queue": queued}


def nodes_status(nodes) -> Any:
    """
    C{nodes.status()} if there is such a thing, else C{None}; never raises,
    so that a broken node table does not hide the sources.
    """
    status = getattr(nodes, "status", None)
    if not callable(status):
        return None
    try:
        result = status()
        json.dumps(result, default=str)
        return result
    except Exception:
        log.failure("status() of the analysis nodes failed")
        return None
