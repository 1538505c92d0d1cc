"""
The hub's in-process events, in the spirit of Scrapy's signals: a part
publishes what happened without knowing who listens, and the parts that
care subscribe when the hub is assembled (L{monitor.hub}).  So the alerts
do not know the web, and the pipeline does not know the browsers.

The events and what they carry:

C{posts.stored} (L{STORED})
    The posts of a batch that the store really inserted, in queue order
    (never a post stored before, so no listener de-duplicates): the alert
    engine and the live channel listen.
C{posts.enriched} (L{ENRICHED})
    Posts stored before their author's profile arrived, now with it (the
    follower rules look at them once more).
C{alert} (L{ALERT})
    An incident event for browsers (L{monitor.alerts.notifiers.live}): the
    live channel listens.
C{status} (L{STATUS})
    Every few seconds, a L{monitor.status.Status}: each collector's state,
    the queue's depth and the analysis nodes' (L{monitor.status}); the
    live channel listens, and sends it to browsers with the counts of the
    posts stored since the last one.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger

__all__ = ["ALERT", "ENRICHED", "STATUS", "STORED", "EventBus"]

STORED = "posts.stored"
ENRICHED = "posts.enriched"
ALERT = "alert"
STATUS = "status"


class EventBus:
    """
    Listeners by event name, called in the order they subscribed, on the
    reactor.  A listener that raises is logged and the others still run.
    """

    log = Logger()

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}

    def subscribe(self, event: str, listener: Callable[[Any], Any]) -> Callable[[], None]:
        """
        Call C{listener(payload)} on each C{event}; returns the call that
        ends the subscription.
        """
        listeners = self._listeners.setdefault(event, [])
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def listeners(self, event: str) -> int:
        """How many listen to C{event}."""
        return len(self._listeners.get(event, ()))

    def publish(self, event: str, payload: Any) -> int:
        """
        Give C{payload} to every listener of C{event}; returns how many
        there were.
        """
        listeners = self._listeners.get(event)
        if not listeners:
            return 0
        for listener in list(listeners):
            try:
                listener(payload)
            except Exception:
                self.log.failure("a listener of {event} failed: {listener!r}", event=event, listener=listener)
        return len(listeners)
