"""
The live channel: incident events published on the hub's event bus
(L{monitor.bus.ALERT}), which the web's push channel relays to every open
browser.  With nobody listening (a hub without the web) the attempt is
recorded as skipped.
"""

from __future__ import annotations

from twisted.internet.defer import succeed
from zope.interface import implementer

from monitor.alerts.notifiers import SENT, SKIPPED, Delivery, Notification, explanation_lines
from monitor.bus import ALERT
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
    Publish incident events on the hub's event bus.
    """

    kind = "live"

    def __init__(self, name: str, bus) -> None:
        self.name = name
        self.bus = bus

    def send(self, notification: Notification):
        if not self.bus.listeners(ALERT):
            return succeed(Delivery(SKIPPED, None, "this hub has no live channel"))
        self.bus.publish(ALERT, live_message(notification))
        return succeed(Delivery(SENT, None, "published to the live channel"))
