"""
Notifiers: the L{monitor.interfaces.INotifier} providers, one per channel
kind, and what they share: the notification they deliver, the outcome they
report, and the text of a message about an incident.

A notifier makes one attempt and says how it went; it never retries, waits
or raises for a delivery problem.  The outbox decides what happens next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from monitor.backoff import retry_after as parse_retry_after

__all__ = [
    "DISABLE",
    "Delivery",
    "FAILED",
    "Notification",
    "RETRY",
    "SENT",
    "SKIPPED",
    "explanation_lines",
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
    capped at C{MAX_RETRY_AFTER}; C{None} if absent or unreadable.
    """
    return parse_retry_after(value, now, MAX_RETRY_AFTER)


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
    "story": "fast-growing story",
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
        lines.append(f"{signal.get('count')} posts in {signal.get('window')}, baseline {signal.get('baseline')}{ratio}")
    elif incident["type"] == "sentiment_shift" and signal:
        lines.append(
            f"{round(100 * signal.get('value', 0))}% negative of {signal.get('count')} posts in "
            f"{signal.get('window')} (baseline {round(100 * signal.get('baseline_share', 0))}%)"
        )
    elif incident["type"] == "source_health" and signal:
        lines.append(
            f"{signal.get('why', 'down')} for {signal.get('value')} min: {signal.get('detail', '')}".rstrip(": ")
        )
    elif incident["type"] == "story" and signal:
        lines.append(
            f"story {signal.get('story')} ({', '.join(signal.get('terms') or [])}): {signal.get('value')} posts/min "
            f"over {signal.get('window')}, {signal.get('size')} posts in all"
        )
    elif incident["type"] == "channel_health":
        lines.append(signal.get("detail", "disabled"))
    lines.append(f"{incident['posts']} posts, {incident['hits']} hits")
    opened = f"opened {incident['opened_at']}"
    if incident.get("resolved_at"):
        opened += f", resolved {incident['resolved_at']} ({incident.get('resolved_by')})"
    lines.append(opened)
    return lines


def _n(value) -> str:
    if value is None:
        return "?"
    return f"{value:g}" if isinstance(value, float) else str(value)


def explanation_lines(incident: dict[str, Any], posts: int = 1, text: int = 200) -> list[str]:
    """
    An incident's explanation (L{monitor.alerts.explain}) as short plain
    lines, the first starting "Why:"; empty when it has none.  Post text is
    given as written (one line, cut to C{text} characters): each message
    format escapes these lines its own way.
    """
    e = incident.get("explanation") or {}
    if not e:
        return []
    window = e.get("window") or "the window"
    lines = []
    stories = [
        f"story '{', '.join(s.get('terms') or []) or s.get('id')}' ({s.get('id')}) rose from "
        f"{_n(s.get('baseline'))} to {_n(s.get('count'))} posts/{window}"
        for s in (e.get("stories") or [])[:2]
    ]
    if stories:
        lines.append("Why: " + "; ".join(stories))
    terms = e.get("terms") or []
    if terms:
        parts = [
            f"{t.get('term')} ({_n(t.get('count'))}"
            + (f", was {_n(t['baseline'])})" if t.get("baseline") is not None else ")")
            for t in terms[:6]
        ]
        lines.append(("Terms: " if stories else "Why: rising terms: ") + ", ".join(parts))
    if not lines:
        lines.append(f"Why: {_n(e.get('posts'))} posts in {window}")
    for p in (e.get("top_posts") or [])[:posts]:
        body = " ".join((p.get("text") or "").split())
        body = body if len(body) <= text else body[: text - 1] + "…"
        who = f"@{p.get('author')}"
        if p.get("author_followers"):
            who += f" ({p['author_followers']} followers)"
        lines.append(f"Top post: {who} on {p.get('source')}: {body}")
    sources = e.get("sources") or []
    if sources:
        lines.append("Sources: " + ", ".join(f"{s.get('source')} {_n(s.get('count'))}" for s in sources))
    places = e.get("places") or []
    if places:
        lines.append(
            "Places: " + ", ".join(f"{p.get('lat')}, {p.get('lon')} ({_n(p.get('count'))} posts)" for p in places[:3])
        )
    return lines
