"""
Read-only SQL the pages need beyond C{IStore.query_posts} and
C{IStore.stats}: posts on the map, advocates and detractors, volume per
topic, the newest posts for trying a draft topic, and topic origins.

Each function runs in a reader thread through C{store.run_read}; every value
is a bound parameter.
"""

from __future__ import annotations

import json

from monitor.model import Post, iso8601
from monitor.store.sqlite_pages import scope as _scope

__all__ = ["author_sentiment", "geo_posts", "oldest_post", "recent_posts", "topic_origins", "topic_volume"]


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
    authors with at least C{min_posts} posts in range.
    """

    def run(trans):
        tables, _, where, params = _scope(topic, since, until)
        base = (
            "SELECT p.author, count(*) AS n, avg(p.compound) AS a, max(p.author_followers) "
            f"FROM {tables} WHERE {where} AND p.compound IS NOT NULL "
            "GROUP BY p.author HAVING n >= ? "
        )
        out = {}
        for name, condition, order in (
            ("advocates", "AND a >= 0.05 ", "a DESC"),
            ("detractors", "AND a <= -0.05 ", "a ASC"),
        ):
            trans.execute(base + condition + f"ORDER BY {order}, n DESC, p.author LIMIT ?", (*params, min_posts, limit))
            out[name] = [
                {"author": author, "posts": n, "average_compound": a, "followers": followers}
                for author, n, a, followers in trans.fetchall()
            ]
        return out

    return store.run_read(run)


def topic_volume(store, since=None, until=None):
    """
    Posts per topic in range: the share of voice across every topic.
    """

    def run(trans):
        where, params = [], []
        if since is not None:
            where.append("created_at >= ?")
            params.append(float(since))
        if until is not None:
            where.append("created_at < ?")
            params.append(float(until))
        trans.execute(
            f"SELECT topic, count(*) AS n FROM post_topics WHERE {' AND '.join(where) or '1'} "
            "GROUP BY topic ORDER BY n DESC, topic",
            params,
        )
        return [{"topic": topic, "count": n} for topic, n in trans.fetchall()]

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
