"""
Notifiers: the L{monitor.interfaces.INotifier} providers, one per channel
kind, and what they share: the notification they deliver, the outcome they
report, and the text of a message about an incident.

A notifier makes one attempt and says how it went; it never retries, waits
or raises for a delivery problem.  The outbox decides what happens next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Optional

__all__ = [
    "DISABLE",
    "Delivery",
    "FAILED",
    "Notification",
    "RETRY",
    "SENT",
    "SKIPPED",
    "headline",
    "retry_after",
    "summary_lines",
]

#: Delivered.
SENT = "sent"
#: Not delivered this time; try again (C{retry_after} seconds, if given).
RETRY = "retry"
#: The receiver refused this notification for good (a bad payload).
FAILED = "failed"
#: The receiver says the channel is gone or forbidden: stop using it.
DISABLE = "disabled"
#: Nothing to deliver to (no live channel in this hub).
SKIPPED = "skipped"

#: Longest Retry-After honoured, in seconds.
MAX_RETRY_AFTER = 3600.0


@dataclass
class Notification:
    """
    One message about one incident event for one channel.  Its C{id} stays
    the same across retries and restarts: receivers use it to drop
    duplicates (it is the C{webhook-id} of a webhook).
    """

    id: str
    incident_id: str
    channel: str
    event: str
    payload: dict[str, Any]
    created_at: float
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    finished_at: Optional[float] = None
    last_error: Optional[str] = None

    @property
    def incident(self) -> dict[str, Any]:
        return self.payload["incident"]


@dataclass(frozen=True)
class Delivery:
    """
    The outcome of one attempt.
    """

    outcome: str
    status: Optional[int] = None
    detail: str = ""
    retry_after: Optional[float] = None
    extra: dict = field(default_factory=dict)


def retry_after(value: Optional[bytes | str], now: float) -> Optional[float]:
    """
    Seconds to wait from a C{Retry-After} header (seconds or an HTTP date),
    capped; C{None} if absent or unreadable.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


_EVENT_WORDS = {"opened": "New incident", "escalated": "Escalated", "resolved": "Resolved", "test": "Test"}
_TYPE_WORDS = {
    "keyword": "keyword match",
    "influencer": "influential author",
    "engagement": "high engagement",
    "purchase_intent": "purchase intent",
    "volume_spike": "volume spike",
    "sentiment_shift": "negative sentiment shift",
    "source_health": "source health",
    "channel_health": "channel disabled",
}


def headline(payload: dict[str, Any]) -> str:
    """
    One line: what happened, to what, how bad.
    """
    incident = payload["incident"]
    subject = incident.get("topic") or incident.get("source") or "all topics"
    what = _TYPE_WORDS.get(incident["type"], incident["type"])
    if incident["type"] == "volume_spike" and incident.get("signal", {}).get("direction") == "down":
        what = "volume drop"
    event = _EVENT_WORDS.get(payload["event"], payload["event"])
    return f"{event} [{incident['severity']}]: {what} on {subject} (rule {incident['rule']})"


def summary_lines(payload: dict[str, Any]) -> list[str]:
    """
    The numbers of an incident as short lines, for any message format.
    """
    incident = payload["incident"]
    signal = incident.get("signal") or {}
    lines = []
    if incident["type"] == "volume_spike" and signal:
        ratio = f" ({signal['ratio']}x)" if signal.get("ratio") else ""
        lines.append(
            f"{signal.get('count')} posts in {signal.get('window')}, baseline {signal.get('baseline')}{ratio}"
        )
    elif incident["type"] == "sentiment_shift" and signal:
        lines.append(
            f"{round(100 * signal.get('value', 0))}% negative of {signal.get('count')} posts in "
            f"{signal.get('window')} (baseline {round(100 * signal.get('baseline_share', 0))}%)"
        )
    elif incident["type"] == "source_health" and signal:
        lines.append(f"{signal.get('why', 'down')} for {signal.get('value')} min: {signal.get('detail', '')}".rstrip(": "))
    elif incident["type"] == "channel_health":
        lines.append(signal.get("detail", "disabled"))
    lines.append(f"{incident['posts']} posts, {incident['hits']} hits")
    opened = f"opened {incident['opened_at']}"
    if incident.get("resolved_at"):
        opened += f", resolved {incident['resolved_at']} ({incident.get('resolved_by')})"
    lines.append(opened)
    return lines
