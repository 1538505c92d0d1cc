"""
The PostgreSQL side of the rollups (L{monitor.store.rollups}): the tables
(migration C{_V2_ROLLUPS} of L{monitor.store.postgresql}), the upserts that
apply a L{Delta} in the batch's transaction, and the queries that sum rollup
rows with the posts of a range's partial minutes, answering as the SQLite
store does (L{monitor.store.sqlite_rollups}).

Here every batch's minutes go to their minute, hour and day rows at once:
one statement per table whose C{GROUP BY} over the minutes and the three
spans runs in the server, so the hub only sends the minute rows (as arrays,
C{unnest}) and nothing waits for an hour to close.  Every value is a bound
parameter; only fixed table and column names are composed.
"""

from __future__ import annotations

import heapq
import json
from typing import Iterable, Optional

from monitor.model import LABELS
from monitor.store.rollups import EVERY, SPANS, Delta, Facts, Tally, cover, floor
from monitor.store.sqlite_rollups import _SHAPES, FACTS, _span_rows, edge_query, facts

__all__ = [
    "TABLES", "apply", "authors", "backfill", "edge_tally", "label_counts", "pieces_sql", "post_count", "ranked",
    "rewrite", "scope_counts", "top_authors", "trending_counts",
]  # fmt: skip

#: The rollup tables: minute, hour and day rows, keys leading with scope,
#: span and start as in the SQLite store's V11 layout.
TABLES = """
CREATE TABLE rollup_volume (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start BIGINT NOT NULL,
    source TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    posts BIGINT NOT NULL,
    scored BIGINT NOT NULL,
    compound DOUBLE PRECISION NOT NULL,
    likes BIGINT NOT NULL,
    reposts BIGINT NOT NULL,
    replies BIGINT NOT NULL,
    PRIMARY KEY (scope, span, start, source, sentiment)
);
CREATE TABLE rollup_labels (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start BIGINT NOT NULL,
    label TEXT NOT NULL,
    posts BIGINT NOT NULL,
    PRIMARY KEY (scope, span, start, label)
);
CREATE TABLE rollup_authors (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start BIGINT NOT NULL,
    author TEXT NOT NULL,
    posts BIGINT NOT NULL,
    scored BIGINT NOT NULL,
    compound DOUBLE PRECISION NOT NULL,
    followers BIGINT,
    PRIMARY KEY (scope, span, start, author)
);
CREATE TABLE rollup_tags (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start BIGINT NOT NULL,
    tag TEXT NOT NULL,
    posts BIGINT NOT NULL,
    PRIMARY KEY (scope, span, start, tag)
);
CREATE TABLE rollup_terms (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start BIGINT NOT NULL,
    term TEXT NOT NULL,
    terms BIGINT NOT NULL,
    trending BIGINT NOT NULL,
    shown TEXT,
    PRIMARY KEY (scope, span, start, term)
);
"""

_TYPES = {
    "scope": "text", "start": "bigint", "source": "text", "sentiment": "text", "label": "text", "author": "text",
    "tag": "text", "term": "text", "posts": "bigint", "scored": "bigint", "compound": "float8", "likes": "bigint",
    "reposts": "bigint", "replies": "bigint", "followers": "bigint", "terms": "bigint", "trending": "bigint",
    "shown": "text",
}  # fmt: skip

_SPANS = "(VALUES " + ", ".join(f"({int(span)})" for span in SPANS) + ") AS s (span)"


def _bucket(column: str) -> str:
    # %% : the statements go through the driver's parameter formatting.
    return f"{column} - ((({column} %% s.span) + s.span) %% s.span)"


def _upsert(table: str) -> str:
    """
    Minute rows as one JSON array of arrays (quoted by C{json.dumps}, far
    cheaper for the hub than the driver's arrays), summed into every span's
    rows in the server.
    """
    keys, sums, extra = _SHAPES[table]
    columns = ["scope", "start", *keys, *sums, *([extra] if extra else [])]
    fields = ", ".join(f"(e ->> {i})::{_TYPES[c]} AS {c}" for i, c in enumerate(columns))
    picked = {"followers": ", max(d.followers)", "shown": ", min(d.shown)"}.get(extra, "")
    sets = [f"{c} = r.{c} + excluded.{c}" for c in sums]
    if extra == "followers":
        sets.append("followers = greatest(r.followers, excluded.followers)")
    elif extra == "shown":
        sets.append("shown = coalesce(r.shown, excluded.shown)")
    return (
        f"INSERT INTO {table} AS r (scope, span, start, {', '.join(columns[2:])}) "
        f"SELECT d.scope, s.span, {_bucket('d.start')}, {', '.join(f'd.{k}' for k in keys)}, "
        f"{', '.join(f'sum(d.{c})' for c in sums)}{picked} "
        f"FROM (SELECT {fields} FROM jsonb_array_elements(%s::jsonb) AS e) AS d CROSS JOIN {_SPANS} "
        f"GROUP BY 1, 2, 3, {', '.join(str(4 + i) for i in range(len(keys)))} "
        f"ON CONFLICT (scope, span, start, {', '.join(keys)}) DO UPDATE SET {', '.join(sets)}"
    )


_UPSERT = {table: _upsert(table) for table in _SHAPES}

_EMPTY = {
    "rollup_volume": "t.posts = 0",
    "rollup_labels": "t.posts = 0",
    "rollup_authors": "t.posts = 0",
    "rollup_tags": "t.posts = 0",
    "rollup_terms": "t.terms = 0 AND t.trending = 0",
}


async def apply(cursor, delta: Delta) -> None:
    """
    Add C{delta} to the minute, hour and day rows in the caller's
    transaction: one statement per table.
    """
    if not delta:
        return
    rows: dict[str, list] = {table: [] for table in _SHAPES}
    for (scope, start), minute in delta.minutes.items():
        for table, values in _span_rows(scope, SPANS[0], start, minute).items():
            rows[table] += [(row[0], *row[2:]) for row in values]
    for table, values in rows.items():
        if not values:
            continue
        await cursor.execute(_UPSERT[table], (json.dumps(values),))
        if delta.removed:
            columns = list(zip(*values))
            keys = _SHAPES[table][0]
            await cursor.execute(
                f"DELETE FROM {table} AS t USING unnest(%s::text[], %s::bigint[], "
                f"{', '.join(f'%s::{_TYPES[k]}[]' for k in keys)}) AS d (scope, start, {', '.join(keys)}) "
                f"CROSS JOIN {_SPANS} WHERE t.scope = d.scope AND t.span = s.span AND t.start = {_bucket('d.start')} "
                f"AND {' AND '.join(f't.{k} = d.{k}' for k in keys)} AND {_EMPTY[table]}",
                [list(c) for c in columns[: 2 + len(keys)]],
            )
    for scope, minute, author in delta.shrunk:
        # A post left these rows: their largest follower count may have too.
        topic = "" if scope == EVERY else " AND p.id IN (SELECT post_id FROM post_topics WHERE topic = %s)"
        for span in SPANS:
            start = floor(minute, span)
            await cursor.execute(
                "UPDATE rollup_authors SET followers = (SELECT max(p.author_followers) FROM posts AS p "
                f"WHERE p.author = %s AND p.created_at >= %s AND p.created_at < %s{topic}) "
                "WHERE scope = %s AND span = %s AND start = %s AND author = %s",
                (author, start, start + span, *(() if scope == EVERY else (scope,)), scope, span, start, author),
            )


async def facts_of(cursor, column: str, keys: list) -> dict:
    """The L{Facts} of the posts whose C{column} (C{id} or C{uid}) is in C{keys}."""
    assert column in ("id", "uid")
    if not keys:
        return {}
    await cursor.execute(f"SELECT p.{column}, {FACTS} FROM posts AS p WHERE p.{column} = ANY(%s)", (list(keys),))
    return {key: facts(row) for key, *row in cursor.fetchall()}


async def rewrite(cursor, before: dict, after: dict) -> None:
    """Move the counts of posts whose facts went from C{before} to C{after} (the texts kept)."""
    delta = Delta()
    for key, old in before.items():
        new = after.get(key)
        if new != old:
            delta.add(old, -1, words=False)
            if new is not None:
                delta.add(new, 1, words=False)
    await apply(cursor, delta)


async def backfill(cursor, chunk: int = 5000) -> int:
    """Count every stored post into empty rollup tables; returns the posts counted."""
    last, done = 0, 0
    while True:
        await cursor.execute(
            f"SELECT p.id, {FACTS} FROM posts AS p WHERE p.id > %s ORDER BY p.id LIMIT %s", (last, chunk)
        )
        rows = cursor.fetchall()
        if not rows:
            return done
        delta = Delta()
        for row_id, *row in rows:
            delta.add(facts(row))
        await apply(cursor, delta)
        last = rows[-1][0]
        done += len(rows)


def new_facts(post, words) -> Facts:
    """The L{Facts} of a post as it is stored (and C{words}, its L{post_words})."""
    analysis = post.analysis
    return Facts(
        float(post.created_at), tuple(sorted(set(post.topics))), post.source,
        analysis.sentiment if analysis else None, analysis.compound if analysis else None,
        int(post.likes or 0), int(post.reposts or 0), int(post.replies or 0),
        tuple(analysis.labels) if analysis else (), post.author, post.author_followers, post.text, post.lang, words,
    )  # fmt: skip


# -- reading ------------------------------------------------------------------


def pieces_sql(table: str, columns: str, scope: str, pieces, extra: str = "", extra_params=(), column_params=()):
    """As L{monitor.store.sqlite_rollups.pieces_sql}, every span from its rows."""
    parts, params = [], []
    for span, lo, hi in pieces:
        where, values = ["scope = %s", "span = %s"], [scope, span]
        if lo is not None:
            where.append("start >= %s")
            values.append(lo)
        if hi is not None:
            where.append("start < %s")
            values.append(hi)
        parts.append(f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}{extra}")
        params += list(column_params) + values + list(extra_params)
    return (" UNION ALL ".join(parts), params) if parts else (None, [])


async def edge_tally(cursor, topic: Optional[str], edges, bucket: Optional[int] = None, words: bool = True) -> Tally:
    tally = Tally(bucket)
    for lo, hi in edges:
        await cursor.execute(*edge_query(topic, lo, hi, "%s"))
        for row in cursor.fetchall():
            tally.add(facts(row), words)
    return tally


async def ranked(cursor, union, params, edge: dict, limit, having: str = "", having_params=()) -> list:
    """C{key, posts} summed over rollup rows and the edges' counts, most first, ties by key."""
    parts = [union] if union else []
    params = list(params)
    if edge:
        parts.append("SELECT * FROM unnest(%s::text[], %s::bigint[]) AS e (k, posts)")
        params += [list(edge), list(edge.values())]
    if not parts:
        return []
    sql = (
        f"SELECT k, sum(posts)::bigint AS n FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY k {having} "
        'ORDER BY n DESC, k COLLATE "C"'
    )
    params += list(having_params)
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    await cursor.execute(sql, params)
    return [tuple(row) for row in cursor.fetchall()]


async def authors(cursor, scope: str, pieces, tally: Tally) -> list:
    """C{(author, posts, followers, scored, compound)} of every author of the range."""
    union, params = pieces_sql("rollup_authors", "author AS k, posts, followers, scored, compound", scope, pieces)
    parts = [union] if union else []
    if tally.authors:
        parts.append(
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[]) "
            "AS e (k, posts, followers, scored, compound)"
        )
        rows = [(a, n, f, s, c) for a, (n, s, c, f) in tally.authors.items()]
        params += [list(column) for column in zip(*rows)]
    if not parts:
        return []
    await cursor.execute(
        "SELECT k, sum(posts)::bigint, max(followers), sum(scored)::bigint, coalesce(sum(compound), 0) "
        f"FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY k",
        params,
    )
    return [tuple(row) for row in cursor.fetchall()]


def _binary(text: str) -> bytes:
    # SQLite's order of text: its UTF-8 bytes.
    return text.encode("utf-8")


async def top_authors(cursor, scope: str, pieces, tally: Tally, limit: int) -> tuple[list, list]:
    rows = await authors(cursor, scope, pieces, tally)
    by_followers = heapq.nsmallest(
        limit, (r for r in rows if r[2] is not None), key=lambda r: (-r[2], -r[1], _binary(r[0]))
    )
    by_posts = heapq.nsmallest(limit, rows, key=lambda r: (-r[1], -(r[2] if r[2] is not None else -1), _binary(r[0])))
    return by_followers, by_posts


async def scope_counts(cursor, scopes: Optional[list], since, until) -> dict:
    pieces, edges = cover(since, until)
    counts: dict = {}
    for span, lo, hi in pieces:
        where, params = ["span = %s"], [span]
        if scopes is None:
            where.append("scope != %s")
            params.append(EVERY)
        else:
            where.append("scope = ANY(%s)")
            params.append(list(scopes))
        if lo is not None:
            where.append("start >= %s")
            params.append(lo)
        if hi is not None:
            where.append("start < %s")
            params.append(hi)
        await cursor.execute(
            f"SELECT scope, sum(posts)::bigint FROM rollup_volume WHERE {' AND '.join(where)} GROUP BY scope", params
        )
        for scope, n in cursor.fetchall():
            counts[scope] = counts.get(scope, 0) + n
    for lo, hi in edges:
        where, params = ["created_at >= %s", "created_at < %s"], [lo, hi]
        if scopes is not None:
            where.append("topic = ANY(%s)")
            params.append(list(scopes))
        await cursor.execute(
            f"SELECT topic, count(*) FROM post_topics WHERE {' AND '.join(where)} GROUP BY topic", params
        )
        for scope, n in cursor.fetchall():
            counts[scope] = counts.get(scope, 0) + n
    return {scope: n for scope, n in counts.items() if n}


async def label_counts(cursor, scope: str, pieces, tally: Tally) -> dict:
    union, params = pieces_sql("rollup_labels", "label, posts", scope, pieces)
    counts = dict.fromkeys(LABELS, 0)
    if union:
        await cursor.execute(f"SELECT label, sum(posts)::bigint FROM ({union}) AS u GROUP BY label", params)
        for label, n in cursor.fetchall():
            if label in counts:
                counts[label] += n
    for label, n in tally.labels.items():
        if label in counts:
            counts[label] += n
    return counts


async def post_count(cursor, topic: Optional[str], pieces, tally: Tally) -> int:
    union, params = pieces_sql("rollup_volume", "posts", EVERY if topic is None else topic, pieces)
    rolled = 0
    if union:
        await cursor.execute(f"SELECT coalesce(sum(posts), 0)::bigint FROM ({union}) AS u", params)
        rolled = cursor.fetchone()[0]
    return int(rolled) + tally.count


async def trending_counts(
    cursor, topic: Optional[str], since, until, least: int = 1, only=None, words=False, limit: Optional[int] = None
):
    """As L{monitor.store.sqlite_rollups.trending_counts}."""
    pieces, edges = cover(since, until)
    tally = await edge_tally(cursor, topic, edges)
    extra, extra_params = " AND trending > 0", []
    if only is not None:
        extra += " AND term = ANY(%s)"
        extra_params.append(sorted(only))
    if words:
        extra += " AND strpos(term, ' ') = 0"
    union, params = pieces_sql("rollup_terms", "term AS k, trending AS posts, coalesce(shown, term) AS shown",
                               EVERY if topic is None else topic, pieces, extra, extra_params)  # fmt: skip
    parts = [union] if union else []
    edge = {k: n for k, n in tally.candidates.items() if (only is None or k in only) and not (words and " " in k)}
    if edge:
        parts.append("SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS e (k, posts, shown)")
        params += [list(edge), list(edge.values()), [tally.shown.get(k, k) for k in edge]]
    counts, shown = {}, {}
    if parts:
        sql = (
            f'SELECT k, sum(posts)::bigint AS n, min(shown COLLATE "C") FROM ({" UNION ALL ".join(parts)}) AS u '
            'GROUP BY k HAVING sum(posts) >= %s ORDER BY n DESC, k COLLATE "C"'
        )
        params.append(least)
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        await cursor.execute(sql, params)
        for term, n, form in cursor.fetchall():
            counts[term] = n
            if form:
                shown[term] = form
    return counts, shown, await post_count(cursor, topic, pieces, tally)


def spans_of(bucket: int) -> Iterable[int]:
    return tuple(span for span in SPANS if bucket % span == 0)
