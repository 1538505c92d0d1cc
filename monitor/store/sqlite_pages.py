"""
L{IPostReads} on SQLite: the read-only SQL the pages and dashboards need
beyond C{IStore.query_posts} and C{IStore.stats} (posts on the map,
advocates and detractors, volume per topic, the newest posts for trying a
draft topic, topic origins, and the text samples trending terms are
counted from).  Mixed into L{monitor.store.sqlite.SQLiteStore}; each read
runs in a reader thread, every value a bound parameter.
"""

from __future__ import annotations

import json
from typing import Optional

from monitor.model import Post, iso8601
from monitor.store import sqlite_rollups
from monitor.store.rollups import EVERY

__all__ = ["GEO_COLUMNS", "RECENT_COLUMNS", "PageQueries", "geo_post", "ranked_volume", "recent_post", "scope"]


def scope(topic: Optional[str], since: Optional[float], until: Optional[float]):
    """
    C{(tables, time column, where, params)} selecting the posts (of
    C{topic}) in C{[since, until)}: by post time over every post, by the
    time the post was filed under the topic otherwise.
    """
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


def _oldest_post(trans, topic, since):
    tables, time, where, params = scope(topic, since, None)
    trans.execute(f"SELECT min({time}) FROM {tables} WHERE {where}", params)
    return trans.fetchone()[0]


#: The columns of a post on the map, as L{geo_post} reads them.
GEO_COLUMNS = (
    "p.uid, p.source, p.author, p.text, p.created_at, p.url, p.topics, p.labels, "
    "p.sentiment, p.compound, p.lat, p.lon, p.story"
)


def geo_post(row) -> dict:
    """A post on the map, from its L{GEO_COLUMNS}."""
    uid, source, author, text, created, url, topics, labels, sentiment, compound, lat, lon, story = row
    return {
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


def _geo_posts(trans, topic, since, until, limit):
    tables, time, where, params = scope(topic, since, until)
    trans.execute(
        f"SELECT {GEO_COLUMNS} FROM {tables} WHERE {where} AND p.lat IS NOT NULL AND p.lon IS NOT NULL "
        f"ORDER BY {time} DESC LIMIT ?",
        (*params, int(limit)),
    )
    return [geo_post(row) for row in trans.fetchall()]


def _author_sentiment(trans, topic, since, until, min_posts, limit):
    scope_key = EVERY if topic is None else topic
    pieces, edges = sqlite_rollups.cover(trans, since, until)
    tally = sqlite_rollups.edge_tally(trans, topic, edges, words=False)
    average = "(total(compound) / sum(scored))"
    out = {}
    for name, condition, order in (
        ("advocates", f"AND {average} >= 0.05", f"{average} DESC"),
        ("detractors", f"AND {average} <= -0.05", f"{average} ASC"),
    ):
        rows = sqlite_rollups.authors(
            trans, scope_key, pieces, tally, f"HAVING sum(scored) >= ? {condition}", f"{order}, sum(scored) DESC, k", limit,
            (min_posts,),
        )  # fmt: skip
        out[name] = [
            {"author": author, "posts": scored, "average_compound": compound / scored, "followers": followers}
            for author, _, followers, scored, compound in rows
        ]
    return out


def _topic_volume(trans, since, until):
    return ranked_volume(sqlite_rollups.scope_counts(trans, None, since, until))


def ranked_volume(counts: dict) -> list[dict]:
    """C{{topic: posts}} as L{IPostReads.topic_volume}'s list: most posts first, then by name."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"topic": topic, "count": n} for topic, n in ranked]


#: The columns of a post as L{recent_post} reads them.
RECENT_COLUMNS = (
    "uid, source, network, native_id, author, text, created_at, url, lang, sentiment, compound, "
    "likes, reposts, replies, author_followers, author_verified, lat, lon"
)


def recent_post(row) -> Post:
    """A stored post from its L{RECENT_COLUMNS}, with its sentiment in C{extra}."""
    (uid, source, network, native_id, author, text, created, url, lang, sentiment, compound,
     likes, reposts, replies, followers, verified, lat, lon) = row  # fmt: skip
    post = Post(
        source=source, network=network, native_id=native_id, text=text, author=author,
        created_at=created, url=url, lang=lang, likes=likes or 0, reposts=reposts or 0,
        replies=replies or 0, author_followers=followers, author_verified=bool(verified), lat=lat, lon=lon,
    )  # fmt: skip
    post.extra = {"sentiment": sentiment, "compound": compound}
    return post


def _recent_posts(trans, limit):
    trans.execute(f"SELECT {RECENT_COLUMNS} FROM posts ORDER BY id DESC LIMIT ?", (int(limit),))
    return [recent_post(row) for row in trans.fetchall()]


def _topic_origins(trans):
    trans.execute("SELECT name, origin, updated_at FROM topics")
    return {name: {"origin": origin, "updated_at": updated} for name, origin, updated in trans.fetchall()}


class PageQueries:
    """
    The L{monitor.store.interfaces.IPostReads} methods, over C{run_read}.
    """

    def oldest_post(self, topic=None, since=None):
        return self.run_read(_oldest_post, topic, since)

    def geo_posts(self, topic=None, since=None, until=None, limit=1000):
        return self.run_read(_geo_posts, topic, since, until, limit)

    def author_sentiment(self, topic=None, since=None, until=None, min_posts=2, limit=10):
        return self.run_read(_author_sentiment, topic, since, until, min_posts, limit)

    def topic_volume(self, since=None, until=None):
        return self.run_read(_topic_volume, since, until)

    def recent_posts(self, limit=2000):
        return self.run_read(_recent_posts, limit)

    def topic_origins(self):
        return self.run_read(_topic_origins)

    def term_counts(self, topic, since, until, words=False, least=1, limit=None, only=None):
        """
        The terms of C{topic}'s posts in C{[since, until)}, from the rollups
        (L{monitor.store.sqlite_rollups.trending_counts}).
        """
        return self.run_read(sqlite_rollups.trending_counts, topic, since, until, least, only, words, limit)
