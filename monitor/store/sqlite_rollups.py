"""
The SQLite side of the rollups (L{monitor.store.rollups}): the tables, the
writes that apply a L{Delta} in the writer's transaction, the closing of
hours and days, and the queries that sum rollup rows with the posts of a
range's partial minutes.

Minutes are kept as one row per scope, minute and batch whose columns are
JSON objects (term to posts, author to counts...): a batch costs one
C{INSERT} per scope and minute it touches, not one upsert per term.  Hours
and days are rows per key (term, author...), summed from the minutes once
the hour has closed (L{close}), when the newest post is L{GRACE} past its
end; a post older than that (late) is added to its closed hour's and day's
rows at once.  L{watermarks} say up to where hours and days are closed;
reads take closed hours and days from their rows and the rest from the
minutes (L{cover}).

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
from monitor.store import rollups
from monitor.store.rollups import EVERY, SPANS, Delta, Facts, Minute, Tally, floor

__all__ = [
    "FACTS", "GRACE", "MINUTES", "TABLES", "authors", "backfill", "close", "cover", "edge_tally", "facts",
    "KEEP", "label_counts", "leaders", "leading_authors", "minutes_from_rows", "pieces_sql", "post_count", "ranked", "rewrite", "scope_counts", "store",
    "top_authors", "trending_counts", "watermarks",
]  # fmt: skip

#: How long after an hour ends its minutes are summed into its rows: posts
#: that come this late still cost one minute row, not upserts.
GRACE = 600

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

#: The minutes and the watermarks (migration C{_V12_MINUTES}); the hour and
#: day rows stay in L{TABLES}.  Each minute column is JSON (or NULL):
#: volume C{[[source, sentiment, posts, scored, compound, likes, reposts,
#: replies], ...]}; labels, tags, terms and trending C{{key: posts}};
#: authors C{{author: [posts, scored, compound, followers]}}; shown
#: C{{term: form}} for the trending terms whose first form is not the term.
MINUTES = """
CREATE TABLE rollup_minutes (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    start INTEGER NOT NULL,
    volume TEXT,
    labels TEXT,
    authors TEXT,
    tags TEXT,
    terms TEXT,
    trending TEXT,
    shown TEXT
);
CREATE INDEX rollup_minutes_scope ON rollup_minutes (scope, start);
CREATE INDEX rollup_minutes_start ON rollup_minutes (start);
-- Hours (span 3600) and days (86400) that start before "until" are closed:
-- their rows are complete.  No row: none is.
CREATE TABLE rollup_folded (
    span INTEGER PRIMARY KEY,
    until INTEGER NOT NULL
);
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
    "rollup_volume": (("source", "sentiment"), ("posts", "scored", "compound", "likes", "reposts", "replies"), None),
    "rollup_labels": (("label",), ("posts",), None),
    "rollup_authors": (("author",), ("posts", "scored", "compound"), "followers"),
    "rollup_tags": (("tag",), ("posts",), None),
    "rollup_terms": (("term",), ("terms", "trending"), "shown"),
}

_KEEP = {
    "followers": (
        "followers = CASE WHEN excluded.followers IS NULL THEN followers "
        "WHEN followers IS NULL OR excluded.followers > followers THEN excluded.followers ELSE followers END"
    ),
    "shown": "shown = coalesce(shown, excluded.shown)",
}


def _upsert(table: str, source: Optional[str] = None) -> str:
    """
    The upsert of one table's rows: VALUES when C{source} is None, else
    the rows C{source} selects.
    """
    keys, sums, extra = _SHAPES[table]
    columns = ["scope", "span", "start", *keys, *sums, *([extra] if extra else [])]
    sets = [f"{c} = {c} + excluded.{c}" for c in sums]
    if extra:
        sets.append(_KEEP[extra])
    rows = source or f"VALUES ({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) {rows} ON CONFLICT DO UPDATE SET {', '.join(sets)}"


_UPSERT = {table: _upsert(table) for table in _SHAPES}

#: The columns that count posts (a row is empty when they are all 0).
_COUNTS = ("posts", "terms", "trending")

_EMPTY = {
    "rollup_volume": "posts = 0",
    "rollup_labels": "posts = 0",
    "rollup_authors": "posts = 0",
    "rollup_tags": "posts = 0",
    "rollup_terms": "terms = 0 AND trending = 0",
}


def _span_rows(scope: str, span: int, start: int, minute: Minute) -> dict:
    """The rows of every rollup table that C{minute} (summed to C{span}) adds."""
    terms, trending, shown = minute.terms, minute.trending, minute.shown
    return {
        "rollup_volume": [(scope, span, start, source, sentiment, *row)
                          for (source, sentiment), row in minute.volume.items() if any(row)],
        "rollup_labels": [(scope, span, start, label, n) for label, n in minute.labels.items() if n],
        "rollup_authors": [(scope, span, start, author, *row) for author, row in minute.authors.items()
                           if any(row[:3]) or row[3] is not None],
        "rollup_tags": [(scope, span, start, tag, n) for tag, n in minute.tags.items() if n],
        "rollup_terms": [(scope, span, start, term, n, trending.get(term, 0),
                          shown.get(term, term) if trending.get(term, 0) > 0 else None)
                         for term, n in terms.items() if n or trending.get(term, 0)]
                        + [(scope, span, start, term, 0, n, shown.get(term, term) if n > 0 else None)
                           for term, n in trending.items() if n and term not in terms],
    }  # fmt: skip


def _apply_spans(trans, delta: Delta, spans: Iterable[int], before: Optional[dict] = None) -> None:
    """
    Add C{delta}'s minutes to the hour and day rows of C{spans} by upserts
    (the V11 layout kept every span so; now only late posts and changes to
    closed hours come here), only the minutes before C{before[span]} when
    given.
    """
    for span in spans:
        limit = None if before is None else before.get(span)
        if before is not None and limit is None:
            continue
        chosen = Delta()
        chosen.minutes = {key: m for key, m in delta.minutes.items() if limit is None or key[1] < limit}
        if not chosen.minutes:
            continue
        rows: dict[str, list] = {table: [] for table in _SHAPES}
        for (scope, start), bucket in chosen.spans(span).items():
            for table, values in _span_rows(scope, span, start, bucket).items():
                rows[table] += values
        for table, values in rows.items():
            if values:
                trans.executemany(_UPSERT[table], values)
                if delta.removed:
                    keys = _SHAPES[table][0]
                    trans.executemany(
                        f"DELETE FROM {table} WHERE scope = ? AND span = ? AND start = ? AND "
                        f"{' AND '.join(f'{k} = ?' for k in keys)} AND {_EMPTY[table]}",
                        [row[: 3 + len(keys)] for row in values],
                    )
        for scope, minute, author in delta.shrunk:
            start = floor(minute, span)
            if limit is not None and minute >= limit:
                continue
            trans.execute(
                "UPDATE rollup_authors SET followers = (" + _MOST_FOLLOWERS[scope == EVERY] + ") "
                "WHERE scope = ? AND span = ? AND start = ? AND author = ?",
                (author, start, start + span, *(() if scope == EVERY else (scope,)), scope, span, start, author),
            )


#: The largest follower count of an author's posts in a time range, of all
#: posts (True) or of a topic's.
_MOST_FOLLOWERS = {
    True: "SELECT max(p.author_followers) FROM posts AS p WHERE p.author = ? AND p.created_at >= ? "
    "AND p.created_at < ?",
    False: "SELECT max(p.author_followers) FROM post_topics AS s JOIN posts AS p ON p.id = s.post_id "
    "WHERE p.author = ? AND p.created_at >= ? AND p.created_at < ? AND s.topic = ?",
}


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value) -> Optional[str]:
    return _ENCODE(value) if value else None


def _minute_row(scope: str, start: int, minute: Minute) -> tuple:
    """The C{rollup_minutes} row of C{minute}."""
    return (
        scope, start,
        _dumps([[source, sentiment, *row] for (source, sentiment), row in minute.volume.items()]),
        _dumps(minute.labels), _dumps(minute.authors), _dumps(minute.tags), _dumps(minute.terms),
        _dumps(minute.trending), _dumps(minute.shown),
    )  # fmt: skip


_INSERT_MINUTE = (
    "INSERT INTO rollup_minutes (scope, start, volume, labels, authors, tags, terms, trending, shown) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def watermarks(trans) -> dict:
    """Span to the time before which that span's buckets are closed (L{MINUTES})."""
    trans.execute("SELECT span, until FROM rollup_folded")
    return dict(trans.fetchall())


def store(trans, delta: Delta, now: float) -> None:
    """
    Add new posts' C{delta} to the rollups in the caller's transaction: one
    minute row per scope and minute, the late posts' minutes to their closed
    hours and days too; then close the hours (and days) that the newest
    post has left by L{GRACE}.
    """
    if not delta:
        return
    folded = watermarks(trans)
    trans.executemany(_INSERT_MINUTE, [_minute_row(scope, start, m) for (scope, start), m in delta.minutes.items()])
    _volume_minutes(trans, delta)
    if folded:
        _apply_spans(trans, delta, SPANS[1:], folded)
    # A post from the future (a wrong clock) does not close the present.
    newest = min(max(start for _, start in delta.minutes) + SPANS[0], now)
    close(trans, folded, newest)


def _volume_minutes(trans, delta: Delta) -> None:
    """
    The volume's minute rows too: a few per scope and minute, and what a
    volume bucket that is not whole hours (half an hour) is summed from,
    faster from rows than from the minutes' JSON.
    """
    rows = [(scope, SPANS[0], start, source, sentiment, *row)
            for (scope, start), minute in delta.minutes.items()
            for (source, sentiment), row in minute.volume.items() if any(row)]  # fmt: skip
    if rows:
        trans.executemany(_UPSERT["rollup_volume"], rows)
        if delta.removed:
            trans.executemany(
                "DELETE FROM rollup_volume WHERE scope = ? AND span = ? AND start = ? AND source = ? "
                "AND sentiment = ? AND posts = 0",
                [row[:5] for row in rows],
            )


def close(trans, folded: dict, newest: float) -> None:
    """
    Sum the minutes of every hour that ended L{GRACE} before C{newest} into
    hour rows, and the hours of every day whose hours are all closed into
    day rows, and move the watermarks.
    """
    hour, day = SPANS[1], SPANS[2]
    hours_to = floor(newest - GRACE, hour)
    hours_from = folded.get(hour)
    if hours_from is not None and hours_to <= hours_from:
        return
    where, params = "start < ?", [hours_to]
    if hours_from is not None:
        where, params = "start >= ? AND start < ?", [hours_from, hours_to]
    # Summed in Python, one hour at a time: the JSON is parsed by json.loads
    # faster than by json_each.
    trans.execute(
        f"SELECT DISTINCT {_bucket('start', hour)} FROM rollup_minutes INDEXED BY rollup_minutes_start WHERE {where}",
        params,
    )
    for (start,) in trans.fetchall():
        trans.execute(
            "SELECT scope, volume, labels, authors, tags, terms, trending, shown FROM rollup_minutes "
            "INDEXED BY rollup_minutes_start WHERE start >= ? AND start < ?",
            (start, start + hour),
        )
        buckets: dict[str, Minute] = {}
        for scope, *row in trans.fetchall():
            bucket = buckets.get(scope)
            if bucket is None:
                bucket = buckets[scope] = Minute()
            _add_row(bucket, row)
        rows: dict[str, list] = {table: [] for table in _SHAPES}
        for scope in sorted(buckets):
            for table, values in _span_rows(scope, hour, start, buckets[scope]).items():
                rows[table] += values
        for table, values in rows.items():
            if values:
                # Not sorted: the hour's keys are a new range of the table,
                # cached, and sorting cost more than it saved (measured).
                trans.executemany(_UPSERT[table], values)
    trans.execute("INSERT OR REPLACE INTO rollup_folded (span, until) VALUES (?, ?)", (hour, hours_to))
    days_from, days_to = folded.get(day), floor(hours_to, day)
    if days_from is not None and days_to <= days_from:
        return
    # Only the scopes with minutes in those days, so that each is one range
    # of the rows' keys.
    lo = days_from if days_from is not None else None
    scopes_where = "start < ?" + ("" if lo is None else " AND start >= ?")
    scopes_params = [days_to] + ([] if lo is None else [lo])
    for table in _SHAPES:
        keys, sums, extra = _SHAPES[table]
        picked = {"followers": ", max(followers)", "shown": ", min(shown)"}
        source = (
            f"SELECT scope, {day}, {_bucket('start', day)} AS bucket, {', '.join(keys)}, "
            f"{', '.join(f'sum({c})' for c in sums)}{picked.get(extra, '')} FROM {table} "
            f"WHERE scope IN (SELECT DISTINCT scope FROM rollup_minutes WHERE {scopes_where}) "
            f"AND span = {hour} AND start < ?{'' if lo is None else ' AND start >= ?'} "
            f"GROUP BY scope, bucket, {', '.join(keys)}"
        )
        trans.execute(_upsert(table, source), [*scopes_params, *scopes_params])
    trans.execute("INSERT OR REPLACE INTO rollup_folded (span, until) VALUES (?, ?)", (day, days_to))


def _bucket(column: str, span: int) -> str:
    """The start of the C{span} bucket holding C{column}, also before the epoch."""
    return f"{column} - (({column} % {int(span)}) + {int(span)}) % {int(span)}"


def _add_row(minute: Minute, row) -> None:
    """Add a C{rollup_minutes} row's JSON columns (volume onwards) to C{minute}."""
    volume, labels, authors, tags, terms, trending, shown = row
    sums = minute.volume
    for source, sentiment, *values in json.loads(volume) if volume else ():
        mine = sums.get((source, sentiment))
        if mine is None:
            sums[(source, sentiment)] = values
        else:
            for i, v in enumerate(values):
                mine[i] += v
    if authors:
        everyone = minute.authors
        for author, values in json.loads(authors).items():
            mine = everyone.get(author)
            if mine is None:
                everyone[author] = values
            else:
                mine[0] += values[0]
                mine[1] += values[1]
                mine[2] += values[2]
                if values[3] is not None and (mine[3] is None or values[3] > mine[3]):
                    mine[3] = values[3]
    for counter, column in ((minute.labels, labels), (minute.tags, tags), (minute.terms, terms),
                            (minute.trending, trending)):  # fmt: skip
        if column:
            counter.update(json.loads(column))
    if shown:
        for term, form in json.loads(shown).items():
            minute.shown.setdefault(term, form)


def _decode(row) -> Minute:
    """A L{Minute} from the volume, labels and authors of a C{rollup_minutes} row."""
    minute = Minute()
    volume, labels, authors = row
    for source, sentiment, *sums in json.loads(volume or "[]"):
        minute.volume[(source, sentiment)] = sums
    minute.labels.update(json.loads(labels or "{}"))
    minute.authors.update(json.loads(authors or "{}"))
    return minute


def _rewrite_minutes(trans, delta: Delta) -> None:
    """
    Apply a change that keeps the texts (C{words=False}) to the minute rows:
    each touched minute's volume, labels and authors merged into its first
    row, with the change added and the follower counts a post left
    recounted from the posts.
    """
    shrunk: dict[tuple, set] = {}
    for scope, start, author in delta.shrunk:
        shrunk.setdefault((scope, start), set()).add(author)
    for (scope, start), change in delta.minutes.items():
        trans.execute(
            "SELECT id, volume, labels, authors FROM rollup_minutes WHERE scope = ? AND start = ? ORDER BY id",
            (scope, start),
        )
        found = trans.fetchall()
        merged = Minute()
        for row in found:
            merged.merge(_decode(row[1:]))
        # Followers are a maximum: recount the ones a post left.
        for author in shrunk.get((scope, start), ()):
            merged.authors.get(author, [0, 0, 0.0, None])[3] = None
        merged.merge(change)
        for author in shrunk.get((scope, start), ()):
            row = merged.authors.get(author)
            if row is not None:
                trans.execute(
                    _MOST_FOLLOWERS[scope == EVERY],
                    (author, start, start + SPANS[0], *(() if scope == EVERY else (scope,))),
                )
                row[3] = trans.fetchone()[0]
        merged.volume = {k: row for k, row in merged.volume.items() if row[0]}
        merged.labels = type(merged.labels)({k: n for k, n in merged.labels.items() if n})
        merged.authors = {k: row for k, row in merged.authors.items() if row[0]}
        volume, labels, authors = _minute_row(scope, start, merged)[2:5]
        if found:
            trans.execute(
                "UPDATE rollup_minutes SET volume = ?, labels = ?, authors = ? WHERE id = ?",
                (volume, labels, authors, found[0][0]),
            )
            trans.executemany(
                "UPDATE rollup_minutes SET volume = NULL, labels = NULL, authors = NULL WHERE id = ?",
                [(row[0],) for row in found[1:]],
            )
        else:
            trans.execute(_INSERT_MINUTE, (scope, start, volume, labels, authors, None, None, None, None))


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
    if not delta:
        return
    _rewrite_minutes(trans, delta)
    _volume_minutes(trans, delta)
    folded = watermarks(trans)
    if folded:
        _apply_spans(trans, delta, SPANS[1:], folded)


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
    Count every stored post into empty rollup tables of the V11 layout
    (minute, hour and day rows, L{TABLES}), in the caller's transaction;
    returns the posts counted.  L{minutes_from_rows} then moves the minute
    rows to the layout of L{MINUTES}.
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
        _apply_spans(connection, delta, SPANS)
        last = rows[-1][0]
        done += len(rows)


def minutes_from_rows(connection) -> None:
    """
    Move the minute rows of the V11 layout (span 60 in L{TABLES}) into
    L{MINUTES}, and reopen the newest hour and day (their rows dropped,
    their minutes kept), so that the database is as if written with
    minutes from the start.
    """
    key = "v.scope = k.scope AND v.span = 60 AND v.start = k.start"
    connection.execute(
        "INSERT INTO rollup_minutes (scope, start, volume, labels, authors, tags, terms, trending, shown) "
        "SELECT k.scope, k.start, "
        "(SELECT json_group_array(json_array(source, sentiment, posts, scored, compound, likes, reposts, replies)) "
        f"FROM rollup_volume AS v WHERE {key}), "
        f"(SELECT json_group_object(label, posts) FROM rollup_labels AS v WHERE {key}), "
        "(SELECT json_group_object(author, json_array(posts, scored, compound, followers)) "
        f"FROM rollup_authors AS v WHERE {key}), "
        f"(SELECT json_group_object(tag, posts) FROM rollup_tags AS v WHERE {key}), "
        f"(SELECT json_group_object(term, terms) FROM rollup_terms AS v WHERE {key} AND terms != 0), "
        f"(SELECT json_group_object(term, trending) FROM rollup_terms AS v WHERE {key} AND trending != 0), "
        "(SELECT json_group_object(term, shown) FROM rollup_terms AS v "
        f"WHERE {key} AND trending != 0 AND shown IS NOT NULL AND shown != term) "
        "FROM (SELECT DISTINCT scope, start FROM rollup_volume WHERE span = 60) AS k ORDER BY k.scope, k.start"
    )
    for table in _SHAPES:
        if table != "rollup_volume":  # kept as rows too (_volume_minutes)
            connection.execute(f"DELETE FROM {table} WHERE span = 60")
    (newest,) = connection.execute("SELECT max(start) FROM rollup_minutes").fetchone()
    if newest is None:
        return
    for span in SPANS[1:]:
        until = floor(newest, span)
        for table in _SHAPES:
            connection.execute(f"DELETE FROM {table} WHERE span = ? AND start >= ?", (span, until))
        connection.execute("INSERT INTO rollup_folded (span, until) VALUES (?, ?)", (span, until))


# -- reading ------------------------------------------------------------------

#: Each rollup table's columns as the minute rows hold them, for C{WHERE
#: {where}} on C{m.scope} and C{m.start}.
_MINUTE_SQL = {
    "rollup_volume": "SELECT m.scope AS scope, m.start AS start, j.value ->> 0 AS source, j.value ->> 1 AS sentiment, "
    "j.value ->> 2 AS posts, j.value ->> 3 AS scored, j.value ->> 4 AS compound, j.value ->> 5 AS likes, "
    "j.value ->> 6 AS reposts, j.value ->> 7 AS replies FROM rollup_minutes AS m, json_each(m.volume) AS j "
    "WHERE {where}",
    "rollup_labels": "SELECT m.scope AS scope, m.start AS start, j.key AS label, j.value AS posts "
    "FROM rollup_minutes AS m, json_each(m.labels) AS j WHERE {where}",
    "rollup_authors": "SELECT m.scope AS scope, m.start AS start, j.key AS author, j.value ->> 0 AS posts, "
    "j.value ->> 1 AS scored, j.value ->> 2 AS compound, j.value ->> 3 AS followers "
    "FROM rollup_minutes AS m, json_each(m.authors) AS j WHERE {where}",
    "rollup_tags": "SELECT m.scope AS scope, m.start AS start, j.key AS tag, j.value AS posts "
    "FROM rollup_minutes AS m, json_each(m.tags) AS j WHERE {where}",
    "rollup_terms": "SELECT m.scope AS scope, m.start AS start, j.key AS term, j.value AS terms, 0 AS trending, "
    "NULL AS shown FROM rollup_minutes AS m, json_each(m.terms) AS j WHERE {where} "
    # Terms are letters, apostrophes and spaces: a quoted JSON path label.
    "UNION ALL SELECT m.scope, m.start, j.key, 0, j.value, m.shown ->> ('$.\"' || j.key || '\"') "
    "FROM rollup_minutes AS m, json_each(m.trending) AS j WHERE {where}",
}


def _minutes_sql(table: str, where: str) -> str:
    return _MINUTE_SQL[table].replace("{where}", where)


def cover(trans, since, until, spans: Iterable[int] = SPANS):
    """L{rollups.cover} with the closed hours and days of this database."""
    return rollups.cover(since, until, spans, watermarks(trans))


def pieces_sql(
    table: str, columns: str, scope: str, pieces, extra: str = "", extra_params=(), column_params=()
) -> tuple[str, list]:
    """
    C{SELECT columns FROM table} over the rollup buckets of C{pieces}
    (L{cover}) in C{scope}, as one C{UNION ALL}, minutes from their rows;
    C{None} when there are none.  C{column_params} are bound in each
    piece's C{columns}.
    """
    parts, params = [], []
    for span, lo, hi in pieces:
        minutes = span == SPANS[0] and table != "rollup_volume"
        where, values = (["m.scope = ?"], [scope]) if minutes else (["scope = ?", "span = ?"], [scope, span])
        if lo is not None:
            where.append("m.start >= ?" if minutes else "start >= ?")
            values.append(lo)
        if hi is not None:
            where.append("m.start < ?" if minutes else "start < ?")
            values.append(hi)
        if minutes:
            parts.append(f"SELECT {columns} FROM ({_minutes_sql(table, ' AND '.join(where))}) WHERE true{extra}")
            values = values * _MINUTE_SQL[table].count("{where}")
        else:
            parts.append(f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}{extra}")
        params += list(column_params) + values + list(extra_params)
    return (" UNION ALL ".join(parts), params) if parts else (None, [])


def edge_query(topic: Optional[str], lo: float, hi: float, mark: str = "?") -> tuple[str, tuple]:
    """
    The statement (with C{mark} as its placeholder) and parameters that
    read the facts of C{topic}'s posts (or all) in C{[lo, hi)}: one partial
    minute at a range's edge, on either store.
    """
    if topic is None:
        return f"SELECT {FACTS} FROM posts AS p WHERE p.created_at >= {mark} AND p.created_at < {mark}", (lo, hi)
    return (
        f"SELECT {FACTS} FROM post_topics AS s JOIN posts AS p ON p.id = s.post_id "
        f"WHERE s.topic = {mark} AND s.created_at >= {mark} AND s.created_at < {mark}",
        (topic, lo, hi),
    )


def edge_tally(trans, topic: Optional[str], edges, bucket: Optional[int] = None, words: bool = True) -> Tally:
    """
    The posts of C{topic} (or all) in the partial minutes C{edges}, counted.
    """
    tally = Tally(bucket)
    for lo, hi in edges:
        for row in trans.execute(*edge_query(topic, lo, hi)).fetchall():
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
    pieces, edges = cover(trans, since, until)
    counts: dict = {}
    # Minutes too from the volume's rows (L{_volume_minutes}).
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
    pieces, edges = cover(trans, since, until)
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
            f"SELECT k, sum(posts) AS n, min(coalesce(shown, k)) FROM ({' UNION ALL '.join(parts)}) GROUP BY k "
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


# -- top lists over closed buckets ----------------------------------------------

#: How many of each closed hour's or day's most used keys a top list reads
#: first (through the C{_V13_TOP_INDEXES}); at least
#: L{monitor.store.MAX_LIMIT}.
KEEP = 500


def _closed(trans, scope: str, pieces) -> list[tuple[int, int]]:
    """C{(span, start)} of every closed hour and day of C{pieces} that has posts of C{scope}."""
    found = []
    for span, lo, hi in pieces:
        if span == SPANS[0]:
            continue
        where, params = ["scope = ?", "span = ?"], [scope, span]
        if lo is not None:
            where.append("start >= ?")
            params.append(lo)
        if hi is not None:
            where.append("start < ?")
            params.append(hi)
        trans.execute(f"SELECT DISTINCT start FROM rollup_volume WHERE {' AND '.join(where)}", params)
        found += [(span, start) for (start,) in trans.fetchall()]
    return found


def _heads(trans, index: str, columns: str, value: str, scope: str, buckets, keep: int, having=" > 0"):
    """
    Each bucket's C{keep} rows of highest C{value} (C{value} C{having}):
    yields C{(rows, cut)}, C{rows} the C{columns}, C{cut} the highest
    value left out (None when nothing was).
    """
    table = index.rsplit("_", 1)[0]
    sql = (
        f"SELECT {value}, {columns} FROM {table} INDEXED BY {index} WHERE scope = ? AND span = ? AND start = ? "
        f"AND {value}{having} ORDER BY {value} DESC LIMIT ?"
    )
    for span, start in buckets:
        rows = trans.execute(sql, (scope, span, start, keep + 1)).fetchall()
        yield [row[1:] for row in rows[:keep]], (rows[keep][0] if len(rows) > keep else None)


def _by_bucket(trans, table: str, columns: str, key: str, scope: str, pairs) -> list:
    """
    C{SELECT columns} of the rows of C{pairs}, C{(span, start, key)}, that
    exist (a seek on the primary key each).
    """
    if not pairs:
        return []
    return trans.execute(
        f"SELECT {columns} FROM json_each(?) AS j CROSS JOIN {table} AS r WHERE r.scope = ? "
        f"AND r.span = j.value ->> 0 AND r.start = j.value ->> 1 AND r.{key} = j.value ->> 2",
        (json.dumps(pairs), scope),
    ).fetchall()


def _minute_json(trans, column: str, scope: str, pieces):
    """
    The C{column} JSON of every minute row of C{pieces} in C{scope},
    decoded (json.loads sums them faster than C{json_each} in SQL).
    """
    for span, lo, hi in pieces:
        if span != SPANS[0]:
            continue
        where, params = ["scope = ?", f"{column} IS NOT NULL"], [scope]
        if lo is not None:
            where.append("start >= ?")
            params.append(lo)
        if hi is not None:
            where.append("start < ?")
            params.append(hi)
        trans.execute(
            f"SELECT {column} FROM rollup_minutes INDEXED BY rollup_minutes_scope WHERE {' AND '.join(where)}", params
        )
        for (text,) in trans.fetchall():
            yield json.loads(text)


def _order(item) -> tuple:
    return -item[1], item[0]


def leaders(trans, table: str, scope: str, pieces, edge: dict, limit: int, keep: Optional[int] = None) -> list:
    """
    L{ranked} for the C{limit} most used tags (C{rollup_tags}) or stats
    terms (C{rollup_terms}), exact, without reading every key of the
    closed hours and days when their most used keys settle it.

    Each closed bucket gives its C{keep} most used keys first, the minutes
    and edges all theirs; the C{2 * limit} keys most used by those counts
    are counted exactly.  A key left out of a bucket was used there at most
    as often as that bucket's C{keep + 1}-th key, so a key that is not a
    candidate was used at most (the next candidate's count + the sum of
    those cuts) times.  When that is below the last listed count, the list
    is the exact one; otherwise every row is read (L{ranked}).
    """
    keep = KEEP if keep is None else keep
    key, value, index = {"rollup_tags": ("tag", "posts", "rollup_tags_top"),
                         "rollup_terms": ("term", "terms", "rollup_terms_top")}[table]  # fmt: skip
    extra = " AND terms > 0" if table == "rollup_terms" else ""
    exact = dict(edge)
    for counts in _minute_json(trans, "tags" if table == "rollup_tags" else "terms", scope, pieces):
        for k, n in counts.items():
            if n > 0:
                exact[k] = exact.get(k, 0) + n
    buckets = _closed(trans, scope, pieces)
    seen, cut_buckets, bound = dict(exact), [], 0
    for bucket, (rows, cut) in zip(buckets, _heads(trans, index, f"{key}, {value}", value, scope, buckets, keep)):
        for k, n in rows:
            seen[k] = seen.get(k, 0) + n
        if cut is not None:
            cut_buckets.append((bucket, {k for k, _ in rows}))
            bound += cut
    if not cut_buckets:
        return heapq.nsmallest(limit, seen.items(), key=_order)
    ranking = heapq.nsmallest(2 * limit + 1, seen.items(), key=_order)
    candidates = [k for k, _ in ranking[: 2 * limit]]
    # What the cut buckets left out of the candidates' counts.
    counts = {k: seen[k] for k in candidates}
    missing = [[*bucket, k] for bucket, kept in cut_buckets for k in candidates if k not in kept]
    for k, n in _by_bucket(trans, table, f"r.{key}, r.{value}", key, scope, missing):
        counts[k] += n
    best = heapq.nsmallest(limit, counts.items(), key=_order)
    beyond = ranking[2 * limit][1] if len(ranking) > 2 * limit else 0
    if len(best) == limit and beyond + bound < best[-1][1]:
        return best
    return ranked(trans, *pieces_sql(table, f"{key} AS k, {value} AS posts", scope, pieces, extra), key, edge,
                  "n DESC, k", limit)  # fmt: skip


def leading_authors(
    trans, scope: str, pieces, tally: Tally, limit: int, keep: Optional[int] = None
) -> tuple[list, list]:
    """
    L{top_authors}, read as L{leaders} reads terms: each closed bucket's
    C{keep} authors with the most posts and the C{keep} with the most
    followers first (their whole rows, from the indexes), the minutes and
    edges whole, then the candidates' rows that those left out; every row
    when that does not settle both lists.
    """
    keep = KEEP if keep is None else keep
    sums: dict = {}
    for counts in _minute_json(trans, "authors", scope, pieces):
        for k, (n, s, c, f) in counts.items():
            _add_author(sums, (k, n, f, s, c))
    for k, (n, s, c, f) in tally.authors.items():
        _add_author(sums, (k, n, f, s, c))
    buckets = _closed(trans, scope, pieces)
    columns = "author, posts, followers, scored, compound"
    cut_buckets, bound, cut_followers = [], 0, -1
    heads = zip(
        buckets,
        _heads(trans, "rollup_authors_top", columns, "posts", scope, buckets, keep),
        _heads(trans, "rollup_authors_followers", columns, "followers", scope, buckets, keep, " IS NOT NULL"),
    )
    for bucket, (by_posts_rows, cut), (by_followers_rows, cut_f) in heads:
        known = {row[0]: row for row in by_posts_rows}
        known.update((row[0], row) for row in by_followers_rows)
        for row in known.values():
            _add_author(sums, row)
        # A bucket whose authors by posts were all read is whole.
        if cut is not None:
            cut_buckets.append((bucket, known))
            bound += cut
            if cut_f is not None:
                cut_followers = max(cut_followers, cut_f)
    if cut_buckets:
        by_posts_seen = heapq.nsmallest(2 * limit + 1, sums.items(), key=_by_posts)
        by_followers_seen = heapq.nsmallest(
            2 * limit + 1, ((k, r) for k, r in sums.items() if r[1] is not None), key=_by_followers
        )
        candidates = {k for k, _ in by_posts_seen[: 2 * limit]} | {k for k, _ in by_followers_seen[: 2 * limit]}
        posts_beyond = by_posts_seen[2 * limit][1][0] if len(by_posts_seen) > 2 * limit else 0
        followers_beyond = by_followers_seen[2 * limit][1][1] if len(by_followers_seen) > 2 * limit else -1
        missing = [[*bucket, k] for bucket, known in cut_buckets for k in candidates if k not in known]
        for row in _by_bucket(trans, "rollup_authors", ", ".join(f"r.{c}" for c in columns.split(", ")), "author",
                              scope, missing):  # fmt: skip
            _add_author(sums, row)
        sums = {k: sums[k] for k in candidates}
    rows = [(k, *row) for k, row in sums.items()]
    by_followers = heapq.nsmallest(limit, (r for r in rows if r[2] is not None), key=lambda r: (-r[2], -r[1], r[0]))
    by_posts = heapq.nsmallest(limit, rows, key=lambda r: (-r[1], -(r[2] if r[2] is not None else -1), r[0]))
    # Settled when no author left out can have as many posts (followers)
    # as the last listed one.
    if not cut_buckets or (
        len(by_posts) == limit
        and posts_beyond + bound < by_posts[-1][1]
        and len(by_followers) == limit
        and max(followers_beyond, cut_followers) < by_followers[-1][2]
    ):
        return by_followers, by_posts
    return top_authors(trans, scope, pieces, tally, limit)


def _add_author(sums: dict, row) -> None:
    k, n, f, s, c = row
    found = sums.get(k)
    if found is None:
        sums[k] = [n, f, s, c]
        return
    found[0] += n
    if f is not None and (found[1] is None or f > found[1]):
        found[1] = f
    found[2] += s
    found[3] += c


def _by_posts(item) -> tuple:
    k, (n, f, _, _) = item
    return -n, -(f if f is not None else -1), k


def _by_followers(item) -> tuple:
    k, (n, f, _, _) = item
    return -f, -n, k
