"""
Read-only SQL the pages need beyond C{IStore.query_posts} and
C{IStore.stats}: posts on the map, advocates and detractors, volume per
topic, the newest posts for trying a draft topic, and topic origins.

Each function runs in a reader thread through C{store.run_read}; every value
is a bound parameter.
"""

from __future__ import annotations

import json
from typing import Optional

from monitor.model import Post, iso8601
from monitor.store import sqlite_rollups
from monitor.store.rollups import EVERY, cover

__all__ = ["author_sentiment", "geo_posts", "oldest_post", "recent_posts", "topic_origins", "topic_volume"]


def _scope(topic: Optional[str], since: Optional[float], until: Optional[float]):
    if topic is None:
        tables, time, where, params = "posts AS p", "p.created_at", [], []
    else:
        tables = "post_topics AS s JOIN posts AS p ON p.id = s.post_id"
        time, where, params = "s.created_at", ["s.topic = ?"], [topic]
    if since is not None:
        where.append(f"{time} >= ?")
        params.append(float(since))
    if until is not None:
        where.append(f"{time} < ?")
        params.append(float(until))
    return tables, time, " AND ".join(where) or "1", params


def oldest_post(store, topic=None, since=None):
    """
    When the oldest post (of a topic) since C{since} was written, or C{None}.
    """

    def run(trans):
        tables, time, where, params = _scope(topic, since, None)
        trans.execute(f"SELECT min({time}) FROM {tables} WHERE {where}", params)
        return trans.fetchone()[0]

    return store.run_read(run)


def geo_posts(store, topic=None, since=None, until=None, limit=1000):
    """
    The newest posts with coordinates, for the map.
    """

    def run(trans):
        tables, time, where, params = _scope(topic, since, until)
        trans.execute(
            "SELECT p.uid, p.source, p.author, p.text, p.created_at, p.url, p.topics, p.labels, "
            f"p.sentiment, p.compound, p.lat, p.lon, p.story FROM {tables} "
            f"WHERE {where} AND p.lat IS NOT NULL AND p.lon IS NOT NULL "
            f"ORDER BY {time} DESC LIMIT ?",
            (*params, int(limit)),
        )
        return [
            {
                "id": uid,
                "source": source,
                "author": author,
                "text": text,
                "created_at": iso8601(created),
                "url": url,
                "topics": sorted(json.loads(topics)),
                "labels": labels.split(),
                "sentiment": {"label": sentiment, "compound": compound},
                "lat": lat,
                "lon": lon,
                "story": story,
            }
            for uid, source, author, text, created, url, topics, labels, sentiment, compound, lat, lon, story in trans.fetchall()
        ]

    return store.run_read(run)


def author_sentiment(store, topic=None, since=None, until=None, min_posts=2, limit=10):
    """
    Advocates (most positive on average) and detractors (most negative) among
    authors with at least C{min_posts} scored posts in range, from the
    rollups (L{monitor.store.rollups}).
    """

    def run(trans):
        scope = EVERY if topic is None else topic
        pieces, edges = cover(since, until)
        tally = sqlite_rollups.edge_tally(trans, topic, edges, words=False)
        average = "(total(compound) / sum(scored))"
        out = {}
        for name, condition, order in (
            ("advocates", f"AND {average} >= 0.05", f"{average} DESC"),
            ("detractors", f"AND {average} <= -0.05", f"{average} ASC"),
        ):
            rows = sqlite_rollups.authors(
                trans, scope, pieces, tally, f"HAVING sum(scored) >= ? {condition}", f"{order}, sum(scored) DESC, k", limit,
                (min_posts,),
            )  # fmt: skip
            out[name] = [
                {"author": author, "posts": scored, "average_compound": compound / scored, "followers": followers}
                for author, _, followers, scored, compound in rows
            ]
        return out

    return store.run_read(run)


def topic_volume(store, since=None, until=None):
    """
    Posts per topic in range: the share of voice across every topic, from
    the rollups.
    """

    def run(trans):
        counts = sqlite_rollups.scope_counts(trans, None, since, until)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return [{"topic": topic, "count": n} for topic, n in ranked]

    return store.run_read(run)


def recent_posts(store, limit=2000):
    """
    The newest stored posts as L{Post}s (what the matcher looks at: text,
    source, language, and for queries the author, engagement and place),
    for trying a draft topic.
    """

    def run(trans):
        trans.execute(
            "SELECT uid, source, network, native_id, author, text, created_at, url, lang, sentiment, compound, "
            "likes, reposts, replies, author_followers, author_verified, lat, lon "
            "FROM posts ORDER BY id DESC LIMIT ?",
            (int(limit),),
        )
        posts = []
        for (uid, source, network, native_id, author, text, created, url, lang, sentiment, compound,
             likes, reposts, replies, followers, verified, lat, lon) in trans.fetchall():  # fmt: skip
            post = Post(
                source=source, network=network, native_id=native_id, text=text, author=author,
                created_at=created, url=url, lang=lang, likes=likes or 0, reposts=reposts or 0,
                replies=replies or 0, author_followers=followers, author_verified=bool(verified), lat=lat, lon=lon,
            )  # fmt: skip
            post.extra = {"sentiment": sentiment, "compound": compound}
            posts.append(post)
        return posts

    return store.run_read(run)


def topic_origins(store):
    """
    Where each stored topic came from (C{file} or C{web}) and when it last
    changed.
    """

    def run(trans):
        trans.execute("SELECT name, origin, updated_at FROM topics")
        return {name: {"origin": origin, "updated_at": updated} for name, origin, updated in trans.fetchall()}

    return store.run_read(run)
