"""
The live channel: incident events pushed to every open browser through the
hub's push channel (C{hub.push.publish("alert", payload)}), when the hub has
one.  A hub without it records the attempt as skipped.
"""

from __future__ import annotations

from twisted.internet.defer import maybeDeferred, succeed
from zope.interface import implementer

from monitor.alerts.notifiers import SENT, SKIPPED, Delivery, Notification, explanation_lines
from monitor.interfaces import INotifier

__all__ = ["LiveNotifier", "live_message"]


def live_message(notification: Notification) -> dict:
    """
    What browsers get: the event, the topic at the top (the push filters
    look there), the incident, and C{why}: its explanation as a few plain
    lines (the page puts them in as text, never as markup).
    """
    incident = notification.incident
    return {
        "id": notification.id,
        "event": notification.event,
        "topic": incident.get("topic"),
        "incident": incident,
        "why": explanation_lines(incident),
    }


@implementer(INotifier)
class LiveNotifier:
    """
    Publish incident events on the hub's push channel.
    """

    kind = "live"

    def __init__(self, name: str, hub) -> None:
        self.name = name
        self.hub = hub

    def send(self, notification: Notification):
        push = getattr(self.hub, "push", None)
        if push is None or not hasattr(push, "publish"):
            return succeed(Delivery(SKIPPED, None, "this hub has no live channel"))
        d = maybeDeferred(push.publish, "alert", live_message(notification))
        d.addCallback(lambda clients: Delivery(SENT, None, f"queued for {clients} browsers" if isinstance(clients, int) else "published"))
        return d
