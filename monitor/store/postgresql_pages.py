"""
L{IPostReads} on PostgreSQL: what the pages and dashboards read from the
stored posts beyond C{query_posts} and C{stats} (the map, advocates and
detractors, volume per topic, the newest posts, topic origins, the terms
trending topics are counted from), mixed into
L{monitor.store.postgresql.PostgreSQLStore}.

These count from the posts in range (this store has no rollups yet), with
the rows shaped by the SQLite provider's code (L{monitor.store.sqlite_pages})
so that both stores answer alike.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

from monitor.analysis.trending import candidates
from monitor.store.sqlite import _Scope as _SQLiteScope, _time_range
from monitor.store.sqlite_pages import GEO_COLUMNS, RECENT_COLUMNS, geo_post, ranked_volume, recent_post

__all__ = ["PostgreSQLPageReads"]


class _Scope(_SQLiteScope):
    MARK, TRUE = "%s", "true"


def count_terms(rows, words: bool, least: int, limit: Optional[int], only) -> tuple[dict, dict, int]:
    """
    L{IPostReads.term_counts} over C{(text, lang)} rows: each trending
    candidate counted once per post that uses it, most used first (then by
    term), with the form it is shown in.
    """
    counts: Counter = Counter()
    shown: dict[str, str] = {}
    posts = 0
    for text, lang in rows:
        posts += 1
        for folded, form in candidates(text, lang).items():
            if (only is not None and folded not in only) or (words and " " in folded):
                continue
            counts[folded] += 1
            # As the rollups keep it: the least of the forms seen.
            if folded not in shown or form < shown[folded]:
                shown[folded] = form
    ranked = sorted(((term, n) for term, n in counts.items() if n >= least), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        ranked = ranked[:limit]
    return dict(ranked), {term: shown[term] for term, _ in ranked}, posts


class PostgreSQLPageReads:
    """
    The L{monitor.store.interfaces.IPostReads} methods, over the store's
    C{_run} (one transaction each) and C{_in_thread}.
    """

    def oldest_post(self, topic=None, since=None):
        # A topic's times are all in post_topics: its index answers alone.
        table, column = ("posts" if topic is None else "post_topics"), "created_at"
        where, params = _time_range(column, since, None, "%s")
        if topic is not None:
            where, params = ["topic = %s", *where], [topic, *params]
        return self._run(False, self._one, f"SELECT min({column}) FROM {table} WHERE {' AND '.join(where) or 'true'}",
                         params)  # fmt: skip

    def geo_posts(self, topic=None, since=None, until=None, limit=1000):
        scope = _Scope(topic, since, until)
        scope.add("p.lat IS NOT NULL AND p.lon IS NOT NULL")
        sql = (
            f"SELECT {GEO_COLUMNS} FROM {scope.tables} WHERE {scope.condition} "
            f"ORDER BY {scope.time} DESC, {scope.id} DESC LIMIT %s"
        )
        d = self._run(False, self._rows, sql, (*scope.params, int(limit)))
        d.addCallback(lambda rows: [geo_post(row) for row in rows])
        return d

    def author_sentiment(self, topic=None, since=None, until=None, min_posts=2, limit=10):
        return self._run(False, self._author_sentiment, _Scope(topic, since, until), int(min_posts), int(limit))

    @staticmethod
    async def _author_sentiment(cursor, scope, min_posts, limit) -> dict:
        average = "(sum(p.compound) / nullif(count(p.compound), 0))"
        out = {}
        for name, condition, order in (
            ("advocates", f"{average} >= 0.05", f"{average} DESC"),
            ("detractors", f"{average} <= -0.05", f"{average} ASC"),
        ):
            await cursor.execute(
                "SELECT p.author, count(p.compound), sum(p.compound), max(p.author_followers) "
                f"FROM {scope.tables} WHERE {scope.condition} GROUP BY p.author "
                f"HAVING count(p.compound) >= %s AND {condition} "
                f'ORDER BY {order}, count(p.compound) DESC, p.author COLLATE "C" LIMIT %s',
                (*scope.params, min_posts, limit),
            )
            out[name] = [
                {"author": author, "posts": int(scored), "average_compound": compound / scored, "followers": followers}
                for author, scored, compound, followers in cursor.fetchall()
            ]
        return out

    def topic_volume(self, since=None, until=None):
        where, params = _time_range("created_at", since, until, "%s")
        d = self._run(False, self._rows, f"SELECT topic, count(*) FROM post_topics WHERE {' AND '.join(where) or 'true'} "
                      "GROUP BY topic", params)  # fmt: skip
        d.addCallback(lambda rows: ranked_volume({topic: int(n) for topic, n in rows}))
        return d

    def recent_posts(self, limit=2000):
        d = self._run(False, self._rows, f"SELECT {RECENT_COLUMNS} FROM posts ORDER BY id DESC LIMIT %s", (int(limit),))
        d.addCallback(lambda rows: [recent_post(row) for row in rows])
        return d

    def topic_origins(self):
        d = self._run(False, self._rows, "SELECT name, origin, updated_at FROM topics", ())
        d.addCallback(lambda rows: {name: {"origin": origin, "updated_at": at} for name, origin, at in rows})
        return d

    def term_counts(self, topic, since, until, words=False, least=1, limit=None, only=None):
        """
        The terms of C{topic}'s posts in C{[since, until)}, counted from
        every post of the range (exact; no rollups on this store yet).
        """
        scope = _Scope(topic, since, until)
        d = self._run(False, self._rows, f"SELECT p.text, p.lang FROM {scope.tables} WHERE {scope.condition}",
                      scope.params)  # fmt: skip
        d.addCallback(lambda rows: self._in_thread(count_terms, rows, words, least, limit, only))
        return d
