"""
Backtest: run a rule over stored posts for a period and show when it would
have fired, before enabling it.

The run uses the live detector's code on the posts in the order of their
own time, with the topic's history before the period loaded first (so a
window rule has its baseline from the start), in one of the store's reader
threads: the reactor stays free however many posts there are.  Nothing is
written and nobody is notified.
"""

from __future__ import annotations

from typing import Any

from monitor.alerts.detector import Detector
from monitor.alerts.rules import BUCKET, Rule
from monitor.model import iso8601

__all__ = ["MAX_PERIOD", "MAX_POSTS", "run_backtest"]

#: The longest period a backtest covers, in seconds.
MAX_PERIOD = 31 * 86400
#: The most posts a backtest reads; past this the result says truncated.
MAX_POSTS = 500_000


def run_backtest(alerts, rule: Rule, since: float, until: float, max_posts: int = MAX_POSTS):
    """
    Fires with the summary of C{rule} over the period, computed by
    C{alerts} (an L{monitor.store.interfaces.IAlertStore}) off the reactor.
    """
    detector = Detector([rule], new_id=_Ids())
    warm_from = since - detector.horizon * BUCKET if rule.is_window_rule else None

    def run(topics, history, posts):
        return _detect(detector, rule, since, until, max_posts, warm_from, history, posts)

    topics = sorted(rule.topics) if rule.topics else None
    return alerts.replay(topics, since, until, warm_from, max_posts + 1, run)


def _detect(detector, rule, since, until, max_posts, warm_from, history, posts) -> dict[str, Any]:
    """
    Read, detect, summarise (in the store's reader thread).
    """
    if history is not None:
        counts, first = history
        detector.warm(since, counts, first, warm_from)
    else:
        detector.now = since
    scanned, truncated = 0, False
    end = until
    for post in posts:
        if scanned == max_posts:
            truncated = True
            end = post.created_at
            break
        scanned += 1
        detector.observe([post])
    detector.advance(end)
    changes, _ = detector.book.drain()
    incidents: dict[str, dict[str, Any]] = {}
    for change in changes:
        snapshot = change.snapshot
        entry = incidents.setdefault(snapshot["id"], {"events": []})
        entry["events"].append({"event": change.event, "severity": snapshot["severity"]})
        entry.update({k: v for k, v in snapshot.items() if k not in ("clock", "acknowledged_at", "acknowledged_by")})
    for incident in detector.book.open.values():
        entry = incidents.setdefault(incident.id, {"events": []})
        entry.update(incident.to_dict())
        entry["state"] = "open at the end"
    ordered = sorted(incidents.values(), key=lambda i: (i["opened_at"], i["id"]))
    return {
        "rule": rule.to_dict(),
        "since": iso8601(since),
        "until": iso8601(until),
        "posts": scanned,
        "truncated": truncated,
        "fired": len(ordered),
        "incidents": ordered,
    }


class _Ids:
    """
    Readable ids for incidents that never existed.
    """

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"backtest-{self.n}"
