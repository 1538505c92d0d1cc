"""
The SQLite side of the rollups (L{monitor.store.rollups}): the tables, the
upserts that apply a L{Delta} in the writer's transaction, the back-fill,
and the queries that sum rollup rows with the posts of a range's partial
minutes.

Every value is a bound parameter; only fixed table and column names are
composed.  The partial minutes' own counts reach SQLite as one JSON
parameter read with C{json_each}, so that a top list is ranked over rollups
and edges together in one statement.
"""

from __future__ import annotations

import heapq
import json
from typing import Iterable, Optional

from monitor.model import LABELS
from monitor.store.rollups import EVERY, SPANS, Delta, Facts, Tally, cover, floor

__all__ = [
    "FACTS", "TABLES", "apply", "authors", "backfill", "edge_tally", "facts", "label_counts", "pieces_sql", "ranked",
    "post_count", "rewrite", "scope_counts", "top_authors", "trending_counts",
]  # fmt: skip

#: The rollup tables (migration C{_V11_ROLLUPS}).  Keys lead with scope,
#: span and start, so that a range of buckets is one index range.
TABLES = """
CREATE TABLE rollup_volume (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    source TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    posts INTEGER NOT NULL,
    scored INTEGER NOT NULL,
    compound REAL NOT NULL,
    likes INTEGER NOT NULL,
    reposts INTEGER NOT NULL,
    replies INTEGER NOT NULL,
    PRIMARY KEY (scope, span, start, source, sentiment)
) WITHOUT ROWID;
CREATE TABLE rollup_labels (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    label TEXT NOT NULL,
    posts INTEGER NOT NULL,
    PRIMARY KEY (scope, span, start, label)
) WITHOUT ROWID;
CREATE TABLE rollup_authors (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    author TEXT NOT NULL,
    posts INTEGER NOT NULL,
    scored INTEGER NOT NULL,
    compound REAL NOT NULL,
    followers INTEGER,
    PRIMARY KEY (scope, span, start, author)
) WITHOUT ROWID;
CREATE TABLE rollup_tags (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    tag TEXT NOT NULL,
    posts INTEGER NOT NULL,
    PRIMARY KEY (scope, span, start, tag)
) WITHOUT ROWID;
CREATE TABLE rollup_terms (
    scope TEXT NOT NULL,
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    term TEXT NOT NULL,
    -- posts using it among their stats terms, and among their trending
    -- candidates (words and phrases); shown: a trending term's first form.
    terms INTEGER NOT NULL,
    trending INTEGER NOT NULL,
    shown TEXT,
    PRIMARY KEY (scope, span, start, term)
) WITHOUT ROWID;
"""

#: The columns of posts AS p that L{facts} reads, in its order.
FACTS = (
    "p.created_at, p.topics, p.source, p.sentiment, p.compound, p.likes, p.reposts, p.replies, "
    "p.labels, p.author, p.author_followers, p.text, p.lang"
)


def facts(row) -> Facts:
    created, topics, source, sentiment, compound, likes, reposts, replies, labels, author, followers, text, lang = row
    return Facts(
        float(created), tuple(sorted(set(json.loads(topics)))), source, sentiment, compound, likes or 0,
        reposts or 0, replies or 0, tuple(labels.split()), author, followers, text, lang,
    )  # fmt: skip


#: Each rollup table: its key columns after (scope, span, start), the
#: columns a change adds to, and the one kept as a maximum (or first seen).
_SHAPES = {
    "volume": (
        "rollup_volume",
        ("source", "sentiment"),
        ("posts", "scored", "compound", "likes", "reposts", "replies"),
        None,
    ),
    "labels": ("rollup_labels", ("label",), ("posts",), None),
    "authors": ("rollup_authors", ("author",), ("posts", "scored", "compound"), "followers"),
    "tags": ("rollup_tags", ("tag",), ("posts",), None),
    "terms": ("rollup_terms", ("term",), ("terms", "trending"), "shown"),
}


def _statements(name: str):
    """
    The scratch table of one rollup table's minute changes, and per span the
    upsert that sums them into that span's rows.
    """
    table, keys, sums, extra = _SHAPES[name]
    columns = [*keys, *sums, *([extra] if extra else [])]
    scratch = f"temp.rollup_delta_{name}"
    create = f"CREATE TEMP TABLE IF NOT EXISTS rollup_delta_{name} (scope, start, {', '.join(columns)})"
    insert = f"INSERT INTO {scratch} VALUES ({', '.join('?' * (len(columns) + 2))})"
    sets = [f"{c} = {c} + excluded.{c}" for c in sums]
    if extra == "followers":
        picked = "max(followers)"
        sets.append(
            "followers = CASE WHEN excluded.followers IS NULL THEN followers "
            "WHEN followers IS NULL OR excluded.followers > followers THEN excluded.followers ELSE followers END"
        )
    elif extra == "shown":
        picked = "min(shown)"
        sets.append("shown = coalesce(shown, excluded.shown)")
    upserts = []
    for span in SPANS:
        # span is one of our own constants; every value is bound.
        start = f"start - ((start % {int(span)}) + {int(span)}) % {int(span)}"
        upserts.append(
            f"INSERT INTO {table} (scope, span, start, {', '.join(columns)}) "
            f"SELECT scope, {int(span)}, {start} AS bucket, {', '.join(keys)}, "
            f"{', '.join(f'sum({c})' for c in sums)}{', ' + picked if extra else ''} "
            f"FROM {scratch} WHERE true GROUP BY scope, bucket, {', '.join(keys)} "
            f"ON CONFLICT DO UPDATE SET {', '.join(sets)}"
        )
    return create, insert, upserts, f"DELETE FROM {scratch}"


_SQL = {name: _statements(name) for name in _SHAPES}

_EMPTY = (
    "DELETE FROM rollup_volume WHERE posts <= 0",
    "DELETE FROM rollup_labels WHERE posts <= 0",
    "DELETE FROM rollup_authors WHERE posts <= 0",
    "DELETE FROM rollup_tags WHERE posts <= 0",
    "DELETE FROM rollup_terms WHERE terms <= 0 AND trending <= 0",
)


def apply(trans, delta: Delta) -> None:
    """
    Add C{delta} (minute rows) to the rollup tables, in the caller's
    transaction: the minute rows go to scratch tables, and one statement
    per table and span sums them into that span's rows, so that hours and
    days cost SQLite a group-by, not Python a row each.
    """
    if not delta:
        return
    shown = delta.shown
    rows = {
        "volume": [(s, start, source, sentiment, *row) for (s, _, start, source, sentiment), row in delta.volume.items() if any(row)],
        "labels": [(s, start, label, n) for (s, _, start, label), n in delta.labels.items() if n],
        "authors": [(s, start, author, *row) for (s, _, start, author), row in delta.authors.items()
                    if any(row[:3]) or row[3] is not None],
        "tags": [(s, start, tag, n) for (s, _, start, tag), n in delta.tags.items() if n],
        "terms": [(s, start, term, n, t, shown.get(term) if t > 0 else None)
                  for (s, _, start, term), (n, t) in delta.terms.items() if n or t],
    }  # fmt: skip
    for name, values in rows.items():
        if not values:
            continue
        create, insert, upserts, clear = _SQL[name]
        trans.execute(create)
        trans.executemany(insert, values)
        for upsert in upserts:
            trans.execute(upsert)
        trans.execute(clear)
    if delta.removed:
        for statement in _EMPTY:
            trans.execute(statement)
    for scope, _, minute, author in delta.shrunk:
        # A post left these rows: their largest follower count may have too.
        if scope == EVERY:
            source, where, params = "posts AS p", "", ()
        else:
            source = "post_topics AS s JOIN posts AS p ON p.id = s.post_id"
            where, params = " AND s.topic = ?", (scope,)
        for span in SPANS:
            start = floor(minute, span)
            trans.execute(
                "UPDATE rollup_authors SET followers = (SELECT max(p.author_followers) FROM "
                f"{source} WHERE p.author = ? AND p.created_at >= ? AND p.created_at < ?{where}) "
                "WHERE scope = ? AND span = ? AND start = ? AND author = ?",
                (author, start, start + span, *params, scope, span, start, author),
            )


def rewrite(trans, column: str, keys: list, statement: str, rows: Iterable[tuple]) -> None:
    """
    Run C{statement} over C{rows} (an C{UPDATE posts ... WHERE column = ?}
    that keeps the text) and move the changed posts' counts in the rollups
    from what they were to what they are, in the same transaction.

    @param column: C{"id"} or C{"uid"}, the posts' key in C{keys}.
    """
    assert column in ("id", "uid")
    before = _facts_of(trans, column, keys)
    trans.executemany(statement, rows)
    after = _facts_of(trans, column, keys)
    delta = Delta()
    for key, old in before.items():
        new = after.get(key)
        if new != old:
            delta.add(old, -1, words=False)
            if new is not None:
                delta.add(new, 1, words=False)
    apply(trans, delta)


def _facts_of(trans, column: str, keys: list) -> dict:
    found = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        trans.execute(
            f"SELECT p.{column}, {FACTS} FROM posts AS p WHERE p.{column} IN ({', '.join('?' * len(chunk))})", chunk
        )
        for key, *row in trans.fetchall():
            found[key] = facts(row)
    return found


def backfill(connection, chunk: int = 5000) -> int:
    """
    Count every stored post into empty rollup tables, in the caller's
    transaction; returns the posts counted.
    """
    last, done = 0, 0
    while True:
        rows = connection.execute(
            f"SELECT p.id, {FACTS} FROM posts AS p WHERE p.id > ? ORDER BY p.id LIMIT ?", (last, chunk)
        ).fetchall()
        if not rows:
            return done
        delta = Delta()
        for row_id, *row in rows:
            delta.add(facts(row))
        apply(connection, delta)
        last = rows[-1][0]
        done += len(rows)


# -- reading ------------------------------------------------------------------


def pieces_sql(table: str, columns: str, scope: str, pieces, extra: str = "", extra_params=()) -> tuple[str, list]:
    """
    C{SELECT columns FROM table} over the rollup buckets of C{pieces}
    (L{cover}) in C{scope}, as one C{UNION ALL}; C{None} when there are
    none.
    """
    parts, params = [], []
    for span, lo, hi in pieces:
        where, values = ["scope = ?", "span = ?"], [scope, span]
        if lo is not None:
            where.append("start >= ?")
            values.append(lo)
        if hi is not None:
            where.append("start < ?")
            values.append(hi)
        parts.append(f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}{extra}")
        params += values + list(extra_params)
    return (" UNION ALL ".join(parts), params) if parts else (None, [])


def edge_tally(trans, topic: Optional[str], edges, bucket: Optional[int] = None, words: bool = True) -> Tally:
    """
    The posts of C{topic} (or all) in the partial minutes C{edges}, counted.
    """
    tally = Tally(bucket)
    for lo, hi in edges:
        if topic is None:
            sql = f"SELECT {FACTS} FROM posts AS p WHERE p.created_at >= ? AND p.created_at < ?"
            params: tuple = (lo, hi)
        else:
            sql = (
                f"SELECT {FACTS} FROM post_topics AS s JOIN posts AS p ON p.id = s.post_id "
                "WHERE s.topic = ? AND s.created_at >= ? AND s.created_at < ?"
            )
            params = (topic, lo, hi)
        for row in trans.execute(sql, params).fetchall():
            tally.add(facts(row), words)
    return tally


def ranked(
    trans,
    union: Optional[str],
    params: list,
    key: str,
    edge: dict,
    order: str,
    limit: Optional[int],
    having: str = "",
    having_params=(),
) -> list:
    """
    C{key, sum(posts)} over the rollup rows of C{union} and the edge counts
    C{edge} (key to posts), highest first (C{order} breaks ties).
    """
    parts = [union] if union else []
    if edge:
        parts.append("SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS posts FROM json_each(?)")
        params = [*params, json.dumps([[k, n] for k, n in edge.items()])]
    if not parts:
        return []
    sql = f"SELECT k, sum(posts) AS n FROM ({' UNION ALL '.join(parts)}) GROUP BY k {having} ORDER BY {order}"
    params = [*params, *having_params]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return trans.execute(sql, params).fetchall()


def authors(trans, scope: str, pieces, tally: Tally, having: str, order: str, limit: int, having_params=()) -> list:
    """
    C{(author, posts, followers, scored, compound)} summed over rollups and
    edges, filtered by C{having} and ranked by C{order} (all of them, in no
    order, when C{limit} is C{None}).
    """
    union, params = pieces_sql("rollup_authors", "author AS k, posts, followers, scored, compound", scope, pieces)
    parts = [union] if union else []
    if tally.authors:
        parts.append(
            "SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS posts, "
            "json_extract(value, '$[2]') AS followers, json_extract(value, '$[3]') AS scored, "
            "json_extract(value, '$[4]') AS compound FROM json_each(?)"
        )
        params.append(json.dumps([[a, n, f, s, c] for a, (n, s, c, f) in tally.authors.items()]))
    if not parts:
        return []
    sql = (
        "SELECT k, sum(posts) AS n, max(followers) AS followers, sum(scored) AS scored, total(compound) AS compound "
        f"FROM ({' UNION ALL '.join(parts)}) GROUP BY k {having}"
    )
    params = [*params, *having_params]
    if limit is not None:
        sql += f" ORDER BY {order} LIMIT ?"
        params.append(limit)
    trans.execute(sql, params)
    return trans.fetchall()


def top_authors(trans, scope: str, pieces, tally: Tally, limit: int) -> tuple[list, list]:
    """
    The C{limit} authors with the most followers and the C{limit} with the
    most posts, as L{authors} rows, from one pass over the author rows.
    """
    rows = authors(trans, scope, pieces, tally, "", "", None)
    by_followers = heapq.nsmallest(limit, (r for r in rows if r[2] is not None), key=lambda r: (-r[2], -r[1], r[0]))
    by_posts = heapq.nsmallest(limit, rows, key=lambda r: (-r[1], -(r[2] if r[2] is not None else -1), r[0]))
    return by_followers, by_posts


def scope_counts(trans, scopes: list, since, until) -> dict:
    """
    How many posts each scope (topic) has in C{[since, until)}; every scope
    but L{EVERY} when C{scopes} is C{None}.
    """
    pieces, edges = cover(since, until)
    counts: dict = {}
    for span, lo, hi in pieces:
        where, params = ["span = ?"], [span]
        if scopes is None:
            where.append("scope != ?")
            params.append(EVERY)
        else:
            where.append(f"scope IN ({', '.join('?' * len(scopes))})")
            params += scopes
        if lo is not None:
            where.append("start >= ?")
            params.append(lo)
        if hi is not None:
            where.append("start < ?")
            params.append(hi)
        for scope, n in trans.execute(
            f"SELECT scope, sum(posts) FROM rollup_volume WHERE {' AND '.join(where)} GROUP BY scope", params
        ).fetchall():
            counts[scope] = counts.get(scope, 0) + n
    for lo, hi in edges:
        where, params = ["created_at >= ?", "created_at < ?"], [lo, hi]
        if scopes is not None:
            where.append(f"topic IN ({', '.join('?' * len(scopes))})")
            params += scopes
        for scope, n in trans.execute(
            f"SELECT topic, count(*) FROM post_topics WHERE {' AND '.join(where)} GROUP BY topic", params
        ).fetchall():
            counts[scope] = counts.get(scope, 0) + n
    return {scope: n for scope, n in counts.items() if n}


def label_counts(trans, scope: str, pieces, tally: Tally) -> dict:
    union, params = pieces_sql("rollup_labels", "label, posts", scope, pieces)
    counts = dict.fromkeys(LABELS, 0)
    if union:
        for label, n in trans.execute(f"SELECT label, sum(posts) FROM ({union}) GROUP BY label", params).fetchall():
            if label in counts:
                counts[label] += n
    for label, n in tally.labels.items():
        if label in counts:
            counts[label] += n
    return counts


def post_count(trans, topic: Optional[str], pieces, tally: Tally) -> int:
    """How many posts of C{topic} (or all) the pieces and the edges hold."""
    union, params = pieces_sql("rollup_volume", "posts", EVERY if topic is None else topic, pieces)
    rolled = trans.execute(f"SELECT total(posts) FROM ({union})", params).fetchone()[0] if union else 0
    return int(rolled) + tally.count


def trending_counts(
    trans, topic: Optional[str], since, until, least: int = 1, only=None, words=False, limit: Optional[int] = None
):
    """
    The trending candidates (L{monitor.analysis.trending.candidates}) of
    the posts of C{topic} (or all) in C{[since, until)}: C{(counts, shown,
    posts)}, the terms used by at least C{least} posts (only those of
    C{only} if given; only words, no phrases, with C{words}), at most
    C{limit} of them, most used first.
    """
    pieces, edges = cover(since, until)
    tally = edge_tally(trans, topic, edges)
    extra, extra_params = " AND trending > 0", []
    if only is not None:
        extra += " AND term IN (SELECT value FROM json_each(?))"
        extra_params.append(json.dumps(sorted(only)))
    if words:
        extra += " AND instr(term, ' ') = 0"
    union, params = pieces_sql("rollup_terms", "term AS k, trending AS posts, shown", EVERY if topic is None else topic, pieces,
                               extra, extra_params)  # fmt: skip
    parts = [union] if union else []
    edge = {k: n for k, n in tally.candidates.items() if (only is None or k in only) and not (words and " " in k)}
    if edge:
        parts.append(
            "SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS posts, "
            "json_extract(value, '$[2]') AS shown FROM json_each(?)"
        )
        params.append(json.dumps([[k, n, tally.shown.get(k)] for k, n in edge.items()]))
    counts, shown = {}, {}
    if parts:
        sql = (
            f"SELECT k, sum(posts) AS n, min(shown) FROM ({' UNION ALL '.join(parts)}) GROUP BY k "
            "HAVING sum(posts) >= ? ORDER BY sum(posts) DESC, k"
        )
        params.append(least)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        for term, n, form in trans.execute(sql, params).fetchall():
            counts[term] = n
            if form:
                shown[term] = form
    return counts, shown, post_count(trans, topic, pieces, tally)
