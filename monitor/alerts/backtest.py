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

import json
from typing import Any

from monitor.alerts import sql
from monitor.alerts.detector import Detector
from monitor.alerts.rules import BUCKET, Rule
from monitor.model import Analysis, Post, iso8601

__all__ = ["MAX_PERIOD", "MAX_POSTS", "run_backtest"]

#: The longest period a backtest covers, in seconds.
MAX_PERIOD = 31 * 86400
#: The most posts a backtest reads; past this the result says truncated.
MAX_POSTS = 500_000

_COLUMNS = (
    "p.network, p.native_id, p.source, p.author, p.text, p.created_at, p.url, p.likes, p.reposts, "
    "p.replies, p.author_followers, p.author_verified, p.compound, p.sentiment, p.labels, p.topics, "
    "p.received_at, p.lang, p.lat, p.lon"
)


def _post(row) -> Post:
    (network, native_id, source, author, text, created_at, url, likes, reposts, replies,
     followers, verified, compound, sentiment, labels, topics, received_at, lang, lat, lon) = row  # fmt: skip
    analysis = None
    if sentiment is not None:
        analysis = Analysis(compound or 0.0, 0.0, 0.0, 0.0, sentiment, tuple(labels.split()))
    return Post(
        source=source, network=network, native_id=native_id, text=text, author=author,
        created_at=created_at, url=url, likes=likes, reposts=reposts, replies=replies,
        author_followers=followers, author_verified=bool(verified), received_at=received_at or 0.0,
        topics=tuple(json.loads(topics)), analysis=analysis, lang=lang, lat=lat, lon=lon,
    )  # fmt: skip


def run_backtest(trans, rule: Rule, since: float, until: float, max_posts: int = MAX_POSTS) -> dict[str, Any]:
    """
    The interaction: read, detect, summarise.  Runs in a reader thread.
    """
    detector = Detector([rule], new_id=_Ids())
    if rule.topics:
        topics = sorted(rule.topics)
    else:
        trans.execute("SELECT DISTINCT topic FROM post_topics")
        topics = sorted(t for (t,) in trans.fetchall())
    if rule.is_window_rule:
        start = since - detector.horizon * BUCKET
        counts, first = sql.history(trans, topics, start, until=since)
        detector.warm(since, counts, first, start)
    else:
        detector.now = since
    if rule.topics:
        marks = ", ".join("?" * len(topics))
        trans.execute(
            f"SELECT {_COLUMNS} FROM posts AS p WHERE p.id IN (SELECT post_id FROM post_topics "
            f"WHERE topic IN ({marks}) AND created_at >= ? AND created_at < ?) "
            "ORDER BY p.created_at, p.id LIMIT ?",
            (*topics, since, until, max_posts + 1),
        )
    else:
        trans.execute(
            f"SELECT {_COLUMNS} FROM posts AS p WHERE p.created_at >= ? AND p.created_at < ? "
            "ORDER BY p.created_at, p.id LIMIT ?",
            (since, until, max_posts + 1),
        )
    scanned, truncated = 0, False
    end = until
    while True:
        rows = trans.fetchmany(1000)
        if not rows:
            break
        for row in rows:
            if scanned == max_posts:
                truncated = True
                end = row[5]
                break
            scanned += 1
            detector.observe([_post(row)])
        if truncated:
            break
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
