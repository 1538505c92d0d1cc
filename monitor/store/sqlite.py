"""
The embedded store: one SQLite file in WAL mode, reached through
L{twisted.enterprise.adbapi}.

Writes go through a pool of exactly one thread, so they are serialised
without lock contention and a batch is one short transaction; reads use a
separate small pool, so an API request never waits behind a batch (WAL lets
readers run while the writer commits).  Every value reaches SQLite as a
bound parameter; only fixed column names and placeholder lists are composed.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import sqlite3
from collections import Counter
from functools import partial
from typing import Any, Iterable, Optional

from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from monitor.interfaces import IStore
from monitor.model import LABELS, SENTIMENTS, Post, Rejected, Topic, api_post, iso8601
from monitor.service import InFlight
from monitor.query import QueryError, StoredPost, matches, parse as parse_query
from monitor.store import MAX_LIMIT, QUERY_SCAN, PostQuery, StatsQuery, check_story
from monitor.store.interfaces import IPostReads
from monitor.store.migrations import MIGRATIONS, migrate, user_version
from monitor.store import sqlite_rollups
from monitor.store.rollups import EVERY, Delta, Facts, post_words, volume_spans
from monitor.store.text import hashtags, terms
from monitor.store.sqlite_pages import PageQueries

__all__ = ["SQLiteStore", "fts_query", "hashtags", "owner_only_database", "terms"]

#: How long a connection waits for a lock held by another process.
BUSY_TIMEOUT_MS = 5000

#: Most values bound in one C{IN (...)} list.
_CHUNK = 500

#: The files SQLite keeps beside a database in WAL mode.
_SIDE_FILES = ("-wal", "-shm", "-journal")


#: What opening a database file that cannot work raises.
OPEN_ERRORS = (OSError, sqlite3.Error)


def check_openable(path: str) -> None:
    """
    Open the database file once (making its directory), so that a path
    that cannot work fails before anything starts; raises one of
    L{OPEN_ERRORS}.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sqlite3.connect(path).close()


def owner_only_database(path: str) -> list[str]:
    """
    Make the database at C{path} readable by its owner only (it holds
    password hashes, session CSRF tokens and API token hashes): create it
    0600 if it does not exist, so that SQLite, which gives its C{-wal} and
    C{-shm} files the database's mode, creates those 0600 too; tighten an
    existing database and side files that others may read.  Returns the
    files tightened, for the caller to log.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    tightened = []
    for name in (path, *(path + side for side in _SIDE_FILES)):
        try:
            mode = os.stat(name).st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(name, mode & 0o700)
            tightened.append(name)
    return tightened


_POST_COLUMNS = (
    "id", "uid", "source", "network", "native_id", "author", "text",
    "created_at", "url", "lang", "likes", "reposts", "replies",
    "author_followers", "author_verified", "lat", "lon",
    "compound", "pos", "neu", "neg", "sentiment", "labels", "sentiment_by", "topics",
    "received_at", "stored_at", "story",
)  # fmt: skip

# The existence check in _store_batch runs under the write lock, so a plain
# INSERT cannot meet a duplicate uid; if it ever did, the batch fails loudly
# rather than attaching topics to the wrong row.
#: A late profile: the handle (kept if unknown), followers and verified.
_UPDATE_AUTHOR = (
    "UPDATE posts SET author = coalesce(?, author), author_followers = coalesce(?, author_followers), "
    "author_verified = ? WHERE uid = ?"
)

_UPDATE_SCORES = "UPDATE posts SET sentiment = ?, sentiment_by = ?, labels = ? WHERE id = ?"

_INSERT_POST = f"INSERT INTO posts ({', '.join(_POST_COLUMNS)}) VALUES ({', '.join('?' * len(_POST_COLUMNS))})"
_INSERT_TOPIC = "INSERT INTO post_topics (post_id, topic, created_at) VALUES (?, ?, ?)"
_INSERT_TAG = "INSERT INTO post_tags (post_id, tag, created_at) VALUES (?, ?, ?)"
_UPSERT_CURSOR = (
    "INSERT INTO cursors (source, cursor, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (source) DO UPDATE SET "
    "cursor = excluded.cursor, updated_at = excluded.updated_at"
)

# Column order of _post_dict; p.id last, for the page cursor.
_SELECT_POST = (
    "p.uid, p.source, p.network, p.native_id, p.author, p.text, "
    "p.created_at, p.url, p.lang, p.topics, p.labels, p.compound, p.pos, "
    "p.neu, p.neg, p.sentiment, p.likes, p.reposts, p.replies, "
    "p.author_followers, p.author_verified, p.lat, p.lon, p.sentiment_by, p.story, p.id"
)

_FTS_PART = re.compile(r'"([^"]*)"?|([^\s"]+)')
_SEARCHABLE = re.compile(r"[^\W_]")
# FTS5 ends a query string at NUL; no control character is searchable.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fts_query(text: str) -> Optional[str]:
    """
    Turn search text typed by anyone into an FTS5 query that cannot be
    malformed: every word and C{"quoted phrase"} becomes an FTS5 string
    (implicitly ANDed), so operators, brackets and stray quotes are just
    text.  A bare word ending in C{*} stays a prefix search.  Returns
    C{None} when nothing searchable is left.
    """
    parts = []
    for match in _FTS_PART.finditer(_CONTROL.sub(" ", text or "")):
        phrase, word = match.groups()
        prefix = False
        if phrase is None:
            phrase = word.rstrip("*")
            prefix = word.endswith("*")
        if not _SEARCHABLE.search(phrase):
            continue
        parts.append('"' + phrase.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(parts) or None


_COUNT_SOURCE = (
    "INSERT INTO source_counters (source, posts, malformed) VALUES (?, ?, ?) "
    "ON CONFLICT (source) DO UPDATE SET posts = posts + excluded.posts, malformed = malformed + excluded.malformed"
)
_INSERT_LETTER = "INSERT INTO dead_letters (source, received_at, error, context, raw) VALUES (?, ?, ?, ?, ?)"


def _letter_row(rejected: Rejected) -> tuple:
    raw = rejected.raw
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return (rejected.source, rejected.received_at, str(rejected.error), str(rejected.context), bytes(raw))


def _encode_cursor(created_at: float, row_id: int) -> str:
    raw = f"{created_at!r}|{row_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        created, row_id = raw.split("|")
        created_at, row = float(created), int(row_id)
        # Both go to SQLite: a finite REAL and a 64-bit INTEGER.
        if not math.isfinite(created_at) or not -(1 << 63) <= row < 1 << 63:
            raise ValueError(created)
        return created_at, row
    except (ValueError, UnicodeError, binascii.Error, AttributeError):
        raise ValueError(f"cursor: not a page cursor from this API: {cursor!r}")


def _check_range(query) -> None:
    for name in ("since", "until"):
        value = getattr(query, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            raise ValueError(f"{name}: not a time in unix seconds: {value!r}")


def _check_count(name: str, value, highest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise ValueError(f"{name}: must be an integer from 1 to {highest}: {value!r}")
    return value


def _time_range(column: str, since, until, mark: str = "?") -> tuple[list[str], list[float]]:
    """C{column} in C{[since, until)}, with C{mark} as the placeholder (PostgreSQL's is C{%s})."""
    where, params = [], []
    if since is not None:
        where.append(f"{column} >= {mark}")
        params.append(float(since))
    if until is not None:
        where.append(f"{column} < {mark}")
        params.append(float(until))
    return where, params


class _Scope:
    """
    The posts of one topic (or all posts) in a time range, as a FROM clause,
    WHERE conditions and their parameters.  With a topic, time and order come
    from post_topics so that its (topic, created_at, post_id) index serves
    both.
    """

    #: The placeholder, and the condition that holds for every row.
    MARK, TRUE = "?", "1"

    def __init__(self, topic, since, until):
        if topic is None:
            self.tables = "posts AS p"
            self.time, self.id = "p.created_at", "p.id"
            self.where, self.params = [], []
        else:
            self.tables = "post_topics AS s JOIN posts AS p ON p.id = s.post_id"
            self.time, self.id = "s.created_at", "s.post_id"
            self.where, self.params = [f"s.topic = {self.MARK}"], [topic]
        where, params = _time_range(self.time, since, until, self.MARK)
        self.where += where
        self.params += params

    def add(self, condition: str, *params) -> None:
        self.where.append(condition)
        self.params.extend(params)

    @property
    def condition(self) -> str:
        return " AND ".join(self.where) or self.TRUE


def _search(trans, sql: str, params) -> None:
    """
    Run a search; a full-text query FTS5 refuses is the C{q} parameter's fault.
    """
    try:
        trans.execute(sql, params)
    except sqlite3.OperationalError as e:
        if str(e).startswith("fts5"):
            raise ValueError(f"q: {e}") from e
        raise


def _query_tree(query: PostQuery):
    """
    The parsed topic query of a search, or C{None}; a query that does not
    parse is the C{query} parameter's fault.
    """
    if query.query is None or not query.query.strip():
        return None
    try:
        return parse_query(query.query)
    except QueryError as e:
        raise ValueError(f"query: {e}") from e


def _row_matches(tree, row) -> bool:
    (_, source, _, _, author, text, _, _, lang, _, _, _, _, _, _, _, likes, reposts,
     replies, followers, verified, lat, lon, _, _, _) = row  # fmt: skip
    post = StoredPost(text, author, lang, source, likes, reposts, replies, followers, verified, lat, lon)
    return matches(tree, post)


def _query_page(trans, tree, limit: int):
    """
    The first C{limit} rows of a search that satisfy C{tree}, reading at
    most L{QUERY_SCAN} rows; the cursor goes on after the last row
    returned, or after the last row read when the reading stopped short.
    """
    found: list = []
    scanned = 0
    last = None
    while True:
        rows = trans.fetchmany(500)
        if not rows:
            return [_post_dict(row) for row in found], None
        for row in rows:
            if scanned == QUERY_SCAN:
                return [_post_dict(r) for r in found], _encode_cursor(last[6], last[-1])
            scanned += 1
            if _row_matches(tree, row):
                if len(found) == limit:
                    return [_post_dict(r) for r in found], _encode_cursor(found[-1][6], found[-1][-1])
                found.append(row)
            last = row


def _post_dict(row) -> dict[str, Any]:
    (uid, source, network, native_id, author, text, created_at, url, lang,
     topics, labels, compound, pos, neu, neg, sentiment, likes, reposts,
     replies, followers, verified, lat, lon, by, story, _) = row  # fmt: skip
    # Posts stored before sentiment.by existed had VADER's rule.
    by = by or ("vader" if compound is not None else None)
    return api_post(uid, source, network, native_id, author, text, created_at, url, lang, sorted(json.loads(topics)),
                    labels.split(), compound, pos, neu, neg, sentiment, by, likes, reposts, replies, followers,
                    verified, lat, lon, story)  # fmt: skip


def _post_rows(posts: list[Post], first_id: int, now: float):
    """
    The rows of posts, post_topics and post_tags for new posts, built in
    the writer thread rather than on the reactor.
    """
    rows, topic_rows, tag_rows, words = [], [], [], []
    for row_id, post in enumerate(posts, first_id):
        created_at = float(post.created_at)
        analysis = post.analysis
        topics = sorted(set(post.topics))
        if analysis is None:
            scores = (None, None, None, None, None, "", None)
        else:
            labels = " ".join(analysis.labels)
            scores = (
                analysis.compound,
                analysis.pos,
                analysis.neu,
                analysis.neg,
                analysis.sentiment,
                f" {labels} " if labels else "",
                analysis.by,
            )
        rows.append(
            (
                row_id, post.uid, post.source, post.network, post.native_id,
                post.author, post.text, created_at, post.url, post.lang,
                int(post.likes or 0), int(post.reposts or 0),
                int(post.replies or 0), post.author_followers,
                1 if post.author_verified else 0, post.lat, post.lon,
                *scores, json.dumps(topics), post.received_at or None, now,
                post.story,
            )
        )  # fmt: skip
        topic_rows.extend((row_id, topic, created_at) for topic in topics)
        split = post_words(post.text, post.lang)
        words.append(split)
        tag_rows.extend((row_id, tag, created_at) for tag in split[0])
    return rows, topic_rows, tag_rows, words


_COLUMN = {name: i for i, name in enumerate(_POST_COLUMNS)}


def _delta(rows, words) -> Delta:
    """
    What new post rows (L{_post_rows}) and their words add to the rollups.
    """
    delta = Delta()
    c = _COLUMN
    for row, split in zip(rows, words):
        delta.add(
            Facts(row[c["created_at"]], tuple(json.loads(row[c["topics"]])), row[c["source"]],
                  row[c["sentiment"]], row[c["compound"]], row[c["likes"]], row[c["reposts"]],
                  row[c["replies"]], tuple(row[c["labels"]].split()), row[c["author"]],
                  row[c["author_followers"]], row[c["text"]], row[c["lang"]], split)
        )  # fmt: skip
    return delta


def _configure(connection, read_only: bool) -> None:
    """
    Per-connection settings; C{cp_openfun} of both pools.
    """
    connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA cache_size = -65536")
    if read_only:
        # The reader pool never writes; make a slip an error, not a lock.
        connection.execute("PRAGMA query_only = ON")


@implementer(IStore, IPostReads)
class StoreBasics:
    """
    What the SQLite and PostgreSQL stores do alike, whatever their SQL: the
    start's outcome handed to those waiting for it, and the topics of the
    configuration file synced in one transaction (the store's own
    C{_sync_file_topics}).
    """

    def _set_outcome(self, outcome) -> None:
        self._outcome = outcome
        waiters, self._ready_waiters = self._ready_waiters, []
        ok, failure = outcome
        for waiter in waiters:
            if ok:
                waiter.callback(None)
            else:
                waiter.errback(failure)

    def sync_file_topics(self, topics) -> Deferred:
        """
        Make the topics of origin C{file} equal C{topics}, in one
        transaction; a topic saved from the web keeps its web version.
        """
        rows = [(t.name, _spec(t), self._reactor.seconds()) for t in topics]
        d = self._run(True, self._sync_file_topics, rows)
        d.addCallback(self._synced)
        return d

    def _synced(self, result) -> None:
        upserted, removed = result
        self.log.info(
            "synced {count} topics from the file, removed {removed}",
            count=upserted,
            removed=removed,
        )


def share_of_voice(group: str, counts: dict, top: int) -> dict:
    """The share of voice of a group's topics from their post counts, most first."""
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {
        "group": group,
        "topics": [{"topic": name, "count": n, "share": n / total if total else 0} for name, n in ranked[:top]],
    }


class SQLiteStore(StoreBasics, PageQueries, Service):
    """
    L{IStore} on one SQLite file, with the pages' reads (L{IPostReads},
    their SQL in L{monitor.store.sqlite_pages}).

    @ivar path: the database file; its directory is created on start.
    """

    log = Logger()

    def __init__(self, path, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            # Two pools on ":memory:" would be two different databases.
            raise ValueError(f"SQLiteStore needs a file path, not {self.path!r}")
        self._reactor = reactor
        self._writer: Optional[adbapi.ConnectionPool] = None
        self._reader: Optional[adbapi.ConnectionPool] = None
        self._outcome = None  # None while starting, else (ok, None|Failure)
        self._ready_waiters: list[Deferred] = []
        self._in_flight = InFlight()

    # -- service -----------------------------------------------------------

    def startService(self):
        """
        Migrate the schema, then open the reader pool.  The returned
        Deferred (and every later L{ready}) fires when the store can be
        used, or fails if the database cannot be opened or is too new.
        """
        Service.startService(self)
        self._outcome = None
        for name in owner_only_database(self.path):
            self.log.warn("{path} could be read by other users; it is now owner-only (0600)", path=name)
        self._writer = self._pool(1, 1, read_only=False)
        d = self._writer.runWithConnection(self._migrate)
        d.addCallbacks(self._started, self._start_failed)
        return self._in_flight.track(d)

    def stopService(self):
        """
        Let work already handed to the pools finish, then close them.
        """
        Service.stopService(self)
        d = self._in_flight.idle()
        d.addCallback(self._stopped)
        return d

    def _stopped(self, _) -> None:
        self._close_pools()
        self._outcome = None

    def ready(self) -> Deferred:
        """
        A new Deferred that fires with C{None} once migrations are done, or
        fails like the start did; for services that must not touch the store
        before then.
        """
        if self._outcome is None:
            d = Deferred()
            self._ready_waiters.append(d)
            return d
        ok, failure = self._outcome
        return succeed(None) if ok else fail(failure)

    def _pool(self, least: int, most: int, read_only: bool) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
            cp_min=least,
            cp_max=most,
            cp_openfun=partial(_configure, read_only=read_only),
            cp_reactor=self._reactor,
            cp_noisy=False,
        )

    def _migrate(self, connection) -> tuple[list[int], int]:
        applied = migrate(connection, self.path, MIGRATIONS)
        return applied, user_version(connection)

    def _started(self, result) -> None:
        applied, version = result
        for step in applied:
            self.log.info(
                "applied schema migration {version} to {path}",
                version=step,
                path=self.path,
            )
        self._reader = self._pool(1, 2, read_only=True)
        self.log.info(
            "store {path} open at schema version {version}",
            path=self.path,
            version=version,
        )
        self._set_outcome((True, None))

    def _start_failed(self, failure):
        self.log.failure("cannot open store {path}", failure=failure, path=self.path)
        self._close_pools()
        self._set_outcome((False, failure))
        return failure

    def _close_pools(self) -> None:
        for pool in (self._reader, self._writer):
            if pool is not None:
                pool.close()
        self._reader = self._writer = None

    def _run(self, writer: bool, interaction, *args) -> Deferred:
        """
        Run C{interaction} in the writer or a reader thread, once started.
        """
        if self._outcome is None:
            if not self.running:
                return fail(RuntimeError("the store is not running"))
            d = self.ready()
            d.addCallback(lambda _: self._run(writer, interaction, *args))
            return d
        ok, failure = self._outcome
        if not ok:
            return fail(failure)
        pool = self._writer if writer else self._reader
        if pool is None:
            return fail(RuntimeError("the store is not running"))
        return self._in_flight.track(pool.runInteraction(interaction, *args))

    def run_write(self, interaction, *args) -> Deferred:
        """
        Run C{interaction(transaction, *args)} in one write transaction.
        For the providers of the store's other interfaces
        (L{monitor.store.interfaces}) over this file; nothing outside
        C{monitor/store/} calls it.
        """
        return self._run(True, interaction, *args)

    def run_read(self, interaction, *args) -> Deferred:
        """
        Run C{interaction(transaction, *args)} on a read-only connection.
        """
        return self._run(False, interaction, *args)

    # -- posts and cursors -------------------------------------------------

    def store_batch(self, posts, cursors, rejected=(), collected=None, updates=()) -> Deferred:
        """
        Store new posts, keep rejected payloads as dead letters and advance
        cursors in one transaction; fires with the number of posts newly
        stored.

        @param collected: posts per source that this batch accounts for
            (also those no topic matched), added to the sources' all-time
            counters in the same transaction; by default, C{posts}.
        """
        posts = list(posts)
        cursors = dict(cursors or {})
        rejected = list(rejected)
        letters = [_letter_row(r) for r in rejected]
        if collected is None:
            collected = Counter(post.source for post in posts)
        counts = {source: [n, 0] for source, n in collected.items()}
        for r in rejected:
            counts.setdefault(r.source, [0, 0])[1] += 1
        authors = [
            (u.author, u.author_followers, 1 if u.author_verified else 0, uid) for u in updates for uid in u.uids
        ]
        # stored_at is read in the writer thread, once the write lock is
        # held, so that it measures the wait for the writer too.
        return self._run(True, self._store_batch, posts, cursors, self._reactor.seconds, letters, counts, authors)

    @staticmethod
    def _store_batch(trans, posts: list[Post], cursors: dict, clock, letters=(), counts=None, authors=()) -> list[str]:
        # Take the write lock first: the duplicate check and the ids below
        # stay true until commit.
        trans.execute("BEGIN IMMEDIATE")
        now = clock()
        if letters:
            trans.executemany(_INSERT_LETTER, letters)
        if counts:
            trans.executemany(_COUNT_SOURCE, [(source, n, bad) for source, (n, bad) in counts.items()])
        unique: dict[str, Post] = {}
        for post in posts:
            unique.setdefault(post.uid, post)
        stored = set()
        for chunk in _chunks(list(unique)):
            trans.execute(f"SELECT uid FROM posts WHERE uid IN ({_marks(len(chunk))})", chunk)
            stored.update(uid for (uid,) in trans.fetchall())
        fresh = [post for uid, post in unique.items() if uid not in stored]
        if fresh:
            trans.execute("SELECT coalesce(max(id), 0) + 1 FROM posts")
            (first_id,) = trans.fetchone()
            rows, topic_rows, tag_rows, words = _post_rows(fresh, first_id, now)
            trans.executemany(_INSERT_POST, rows)
            if topic_rows:
                trans.executemany(_INSERT_TOPIC, topic_rows)
            if tag_rows:
                trans.executemany(_INSERT_TAG, tag_rows)
            # Only the rows really inserted count, in the same transaction.
            sqlite_rollups.store(trans, _delta(rows, words), now)
        if authors:
            # After the inserts: a profile follows its posts in the queue,
            # sometimes in the same batch.
            sqlite_rollups.rewrite(trans, "uid", [row[-1] for row in authors], _UPDATE_AUTHOR, authors)
        if cursors:
            trans.executemany(
                _UPSERT_CURSOR,
                [(source, cursor, now) for source, cursor in cursors.items()],
            )
        return [post.uid for post in fresh]

    def update_scores(self, changes) -> Deferred:
        """
        Write re-scored posts' C{(sentiment, sentiment_by, labels, id)}
        (labels as stored, space-delimited) and move their counts in the
        rollups, in one transaction.
        """
        changes = list(changes)
        return self._run(True, self._update_scores, changes)

    @staticmethod
    def _update_scores(trans, changes) -> None:
        trans.execute("BEGIN IMMEDIATE")
        sqlite_rollups.rewrite(trans, "id", [row[3] for row in changes], _UPDATE_SCORES, changes)

    # -- story state ---------------------------------------------------------

    def story_state(self) -> Deferred:
        """
        The stories' saved state (L{save_story_state}), or C{None}; parsed
        in a reader thread, not on the reactor.
        """
        return self._run(False, self._story_state)

    @staticmethod
    def _story_state(trans) -> Optional[dict]:
        row = trans.execute("SELECT state FROM story_state WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None

    def save_story_state(self, state: str) -> Deferred:
        """
        Keep C{state}, a JSON object as text, as the stories' one saved
        state, replacing the last.
        """
        return self._run(True, self._save_story_state, state, self._reactor.seconds)

    @staticmethod
    def _save_story_state(trans, state: str, clock) -> None:
        trans.execute(
            "INSERT INTO story_state (id, state, saved_at) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
            (state, clock()),
        )

    def get_cursor(self, source: str) -> Deferred:
        """
        The saved position of C{source}, or C{None}.
        """
        return self._run(False, self._get_cursor, source)

    @staticmethod
    def _get_cursor(trans, source: str) -> Optional[str]:
        trans.execute("SELECT cursor FROM cursors WHERE source = ?", (source,))
        row = trans.fetchone()
        return row[0] if row else None

    def count_posts(self) -> Deferred:
        """
        How many posts are stored.
        """
        return self._run(False, self._count_posts)

    @staticmethod
    def _count_posts(trans) -> int:
        trans.execute("SELECT count(*) FROM posts")
        return trans.fetchone()[0]

    # -- dead letters ------------------------------------------------------

    def dead_letter(self, source: str, raw, error: str, context: str) -> Deferred:
        """
        Keep a payload that could not be read; fires with its id.
        """
        row = _letter_row(Rejected(source, raw, error, context, received_at=self._reactor.seconds()))
        return self._run(True, self._dead_letter, row)

    @staticmethod
    def _dead_letter(trans, row) -> int:
        trans.execute(_INSERT_LETTER, row)
        letter = trans.lastrowid
        trans.execute(_COUNT_SOURCE, (row[0], 0, 1))
        return letter

    def source_counters(self, source: str) -> Deferred:
        """
        C{{"posts": n, "malformed": m}}: what C{source} has collected and
        found malformed, all time (as of the last stored batch).
        """
        return self._run(False, self._source_counters, source)

    @staticmethod
    def _source_counters(trans, source: str) -> dict:
        row = trans.execute("SELECT posts, malformed FROM source_counters WHERE source = ?", (source,)).fetchone()
        return {"posts": row[0], "malformed": row[1]} if row else {"posts": 0, "malformed": 0}

    def dead_letters(self, source: Optional[str] = None, limit: int = 100) -> Deferred:
        """
        The newest dead letters, as JSON-ready dicts.
        """
        limit = max(1, min(int(limit), MAX_LIMIT))
        return self._run(False, self._dead_letters, source, limit)

    @staticmethod
    def _dead_letters(trans, source, limit) -> list[dict]:
        sql = "SELECT id, source, received_at, error, context, raw FROM dead_letters"
        params: list = []
        if source is not None:
            sql += " WHERE source = ?"
            params.append(source)
        trans.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            {
                "id": row_id,
                "source": source,
                "received_at": iso8601(received_at),
                "error": error,
                "context": context,
                "raw": bytes(raw).decode("utf-8", errors="replace"),
            }
            for row_id, source, received_at, error, context, raw in trans.fetchall()
        ]

    # -- search ------------------------------------------------------------

    def query_posts(self, query: PostQuery) -> Deferred:
        """
        One page of posts, newest first, and the cursor of the next page.
        Invalid filters fail with C{ValueError("field: ...")}.
        """
        try:
            plan = self._plan_posts(query)
        except ValueError as e:
            return fail(e)
        if plan is None:
            return succeed(([], None))
        return self._run(False, self._query_posts, *plan)

    def count_matching(self, query: PostQuery, most: int = 10_000) -> Deferred:
        """
        How many posts match C{query}'s filters (its limit and cursor
        aside), counting no further than C{most}: a search page's total,
        bounded in time however broad the search.
        """
        try:
            scope = self._posts_scope(query)
            tree = _query_tree(query)
        except ValueError as e:
            return fail(e)
        if scope is None:
            return succeed(0)
        if tree is not None:
            sql = (
                f"SELECT {_SELECT_POST} FROM {scope.tables} WHERE {scope.condition} "
                f"ORDER BY {scope.time} DESC, {scope.id} DESC LIMIT ?"
            )
            return self._run(False, self._count_query, sql, (*scope.params, QUERY_SCAN), tree, int(most))
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {scope.tables} WHERE {scope.condition} LIMIT ?)"
        return self._run(False, self._count_matching, sql, (*scope.params, int(most)))

    @staticmethod
    def _count_matching(trans, sql, params) -> int:
        _search(trans, sql, params)
        return trans.fetchone()[0]

    @staticmethod
    def _count_query(trans, sql, params, tree, most) -> int:
        _search(trans, sql, params)
        count = 0
        while count < most:
            rows = trans.fetchmany(500)
            if not rows:
                break
            count += sum(1 for row in rows if _row_matches(tree, row))
        return min(count, most)

    @staticmethod
    def _posts_scope(query: PostQuery) -> Optional[_Scope]:
        """
        The filters of C{query} (not its cursor) as a L{_Scope}, or C{None}
        when nothing can match.
        """
        _check_range(query)
        scope = _Scope(query.topic, query.since, query.until)
        if query.source is not None:
            scope.add("p.source = ?", query.source)
        if query.sentiment is not None:
            if query.sentiment not in SENTIMENTS:
                raise ValueError(f"sentiment: must be one of {', '.join(SENTIMENTS)}: {query.sentiment!r}")
            scope.add("p.sentiment = ?", query.sentiment)
        if query.label is not None:
            if query.label not in LABELS:
                raise ValueError(f"label: must be one of {', '.join(LABELS)}: {query.label!r}")
            scope.add("instr(p.labels, ?) > 0", f" {query.label} ")
        if query.story is not None:
            scope.add("p.story = ?", check_story(query.story))
        if query.q is not None and query.q.strip():
            match = fts_query(query.q)
            if match is None:
                return None  # only punctuation: nothing can match
            scope.add("p.id IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?)", match)
        return scope

    @staticmethod
    def _plan_posts(query: PostQuery):
        limit = _check_count("limit", query.limit, MAX_LIMIT)
        scope = SQLiteStore._posts_scope(query)
        tree = _query_tree(query)
        if scope is None:
            return None
        if query.cursor:
            scope.add(f"({scope.time}, {scope.id}) < (?, ?)", *_decode_cursor(query.cursor))
        sql = (
            f"SELECT {_SELECT_POST} FROM {scope.tables} WHERE {scope.condition} "
            f"ORDER BY {scope.time} DESC, {scope.id} DESC LIMIT ?"
        )
        if tree is not None:
            return sql, (*scope.params, QUERY_SCAN + 1), limit, tree
        return sql, (*scope.params, limit + 1), limit

    @staticmethod
    def _query_posts(trans, sql, params, limit, tree=None):
        _search(trans, sql, params)
        if tree is not None:
            return _query_page(trans, tree, limit)
        rows = trans.fetchall()
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            following = _encode_cursor(last[6], last[-1])
        return [_post_dict(row) for row in rows], following

    # -- stats -------------------------------------------------------------

    def stats(self, query: StatsQuery) -> Deferred:
        """
        Aggregates of the posts of a topic (or all) in a time range.
        """
        try:
            _check_range(query)
            bucket = query.bucket
            if isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1:
                raise ValueError(f"bucket: must be a positive number of seconds: {bucket!r}")
            _check_count("top", query.top, MAX_LIMIT)
        except ValueError as e:
            return fail(e)
        return self._run(False, self._stats, query)

    @classmethod
    def _stats(cls, trans, query: StatsQuery) -> dict[str, Any]:
        # One read transaction: every number below comes from one snapshot.
        # Whole minutes, hours and days come from the rollups, the partial
        # minutes at the range's edges from their posts (monitor.store.rollups).
        trans.execute("BEGIN")
        scope = EVERY if query.topic is None else query.topic
        bucket, top = query.bucket, query.top
        pieces, edges = sqlite_rollups.cover(trans, query.since, query.until)
        tally = sqlite_rollups.edge_tally(trans, query.topic, edges, bucket)

        union, params = sqlite_rollups.pieces_sql(
            "rollup_volume", "sentiment, posts, scored, compound, likes, reposts, replies", scope, pieces
        )
        sentiments = dict(tally.sentiments)
        scored, compound = tally.scored, tally.compound
        likes, reposts, replies = tally.likes, tally.reposts, tally.replies
        if union:
            for name, n, s, c, lk, rp, rl in trans.execute(
                f"SELECT sentiment, sum(posts), sum(scored), total(compound), sum(likes), sum(reposts), "
                f"sum(replies) FROM ({union}) GROUP BY sentiment",
                params,
            ).fetchall():
                sentiments[name] = sentiments.get(name, 0) + n
                scored, compound = scored + s, compound + c
                likes, reposts, replies = likes + lk, reposts + rp, replies + rl
        count = sum(sentiments.values())

        # Exact, from each closed bucket's most used keys when they settle it.
        top_hashtags = sqlite_rollups.leaders(trans, "rollup_tags", scope, pieces, dict(tally.tags), top)
        top_terms = sqlite_rollups.leaders(trans, "rollup_terms", scope, pieces, dict(tally.terms), top)
        by_followers, by_posts = sqlite_rollups.leading_authors(trans, scope, pieces, tally, top)

        return {
            "topic": query.topic,
            "since": iso8601(query.since) if query.since is not None else None,
            "until": iso8601(query.until) if query.until is not None else None,
            "bucket": bucket,
            "count": count,
            "sentiment": {
                **{name: sentiments.get(name, 0) for name in SENTIMENTS},
                "average_compound": compound / scored if scored else None,
            },
            "labels": sqlite_rollups.label_counts(trans, scope, pieces, tally),
            "engagement": {"likes": int(likes), "reposts": int(reposts), "replies": int(replies)},
            "volume": cls._volume(trans, query, scope, tally),
            "top_authors": {"by_followers": cls._authors(by_followers), "by_posts": cls._authors(by_posts)},
            "top_hashtags": [{"tag": tag, "count": n} for tag, n in top_hashtags],
            "top_terms": [{"term": term, "count": n} for term, n in top_terms],
            "share_of_voice": cls._share_of_voice(trans, query),
        }

    @staticmethod
    def _volume(trans, query: StatsQuery, scope: str, tally) -> list[dict]:
        """
        Posts per bucket by sentiment: sums of the rollup buckets that
        divide C{bucket}, plus the partial minutes; a bucket that is not a
        whole number of minutes is counted from the posts.
        """
        bucket = query.bucket
        spans = volume_spans(bucket)
        counts: dict[int, dict] = {}
        if not spans:
            where = _Scope(query.topic, query.since, query.until)
            # floor(t / bucket) without the optional math functions.
            whole = f"CAST({where.time} / ? AS INTEGER)"
            key = f"{whole} - ({where.time} < {whole} * ?)"
            rows = trans.execute(
                f"SELECT ({key}) * ? AS k, coalesce(p.sentiment, ''), count(*) FROM {where.tables} "
                f"WHERE {where.condition} GROUP BY k, p.sentiment",
                (bucket, bucket, bucket, bucket, *where.params),
            ).fetchall()
        else:
            pieces, _ = sqlite_rollups.cover(trans, query.since, query.until, spans)
            union, params = sqlite_rollups.pieces_sql(
                "rollup_volume", "start - ((start % ?) + ?) % ? AS k, sentiment, posts", scope, pieces,
                column_params=(bucket, bucket, bucket),
            )  # fmt: skip
            rows = []
            if union:
                rows = trans.execute(
                    f"SELECT k, sentiment, sum(posts) FROM ({union}) GROUP BY k, sentiment", params
                ).fetchall()
            for start, by in tally.volume.items():
                rows += [(start, name, n) for name, n in by.items()]
        for start, name, n in rows:
            counts.setdefault(int(start), {}).setdefault(name, 0)
            counts[int(start)][name] += n
        return [
            {"start": iso8601(start), "count": sum(by.values()), **{name: by.get(name, 0) for name in SENTIMENTS}}
            for start, by in sorted(counts.items())
        ]

    @staticmethod
    def _authors(rows) -> list[dict]:
        return [
            {
                "author": author,
                "followers": followers,
                "posts": n,
                "average_compound": compound / scored if scored else None,
            }
            for author, n, followers, scored, compound in rows
        ]

    @staticmethod
    def _share_of_voice(trans, query: StatsQuery) -> Optional[dict]:
        if query.topic is None:
            return None
        specs = {}
        trans.execute("SELECT name, spec FROM topics")
        for name, spec in trans.fetchall():
            try:
                specs[name] = json.loads(spec).get("group")
            except (ValueError, AttributeError):
                continue
        group = specs.get(query.topic)
        if group is None:
            return None
        members = sorted(name for name, g in specs.items() if g == group)
        counts = dict.fromkeys(members, 0)
        for chunk in _chunks(members):
            counts.update(sqlite_rollups.scope_counts(trans, chunk, query.since, query.until))
        return share_of_voice(group, counts, query.top)

    # -- topics ------------------------------------------------------------

    @staticmethod
    def _sync_file_topics(trans, rows) -> tuple[int, list[str]]:
        trans.execute("BEGIN IMMEDIATE")
        trans.executemany(
            "INSERT INTO topics (name, spec, origin, updated_at) VALUES (?, ?, 'file', ?) "
            "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
            "updated_at = excluded.updated_at "
            "WHERE topics.origin = 'file' AND topics.spec IS NOT excluded.spec",
            rows,
        )
        names = {name for name, _, _ in rows}
        trans.execute("SELECT name FROM topics WHERE origin = 'file'")
        stale = sorted(name for (name,) in trans.fetchall() if name not in names)
        trans.executemany(
            "DELETE FROM topics WHERE name = ? AND origin = 'file'",
            [(name,) for name in stale],
        )
        return len(rows), stale

    def save_topic(self, topic: Topic, origin: str = "web") -> Deferred:
        """
        Create or replace one topic.  Saved with origin C{web}, it is no
        longer overwritten or removed by the configuration file.
        """
        if origin not in ("file", "web"):
            return fail(ValueError(f"origin: must be 'file' or 'web': {origin!r}"))
        row = (topic.name, _spec(topic), origin, self._reactor.seconds())
        return self._run(True, self._save_topic, row)

    @staticmethod
    def _save_topic(trans, row) -> None:
        trans.execute(
            "INSERT INTO topics (name, spec, origin, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
            "origin = excluded.origin, updated_at = excluded.updated_at",
            row,
        )

    def delete_topic(self, name: str) -> Deferred:
        """
        Remove one topic; fires with whether it existed.  Its stored posts
        keep their topic name.
        """
        return self._run(True, self._delete_topic, name)

    @staticmethod
    def _delete_topic(trans, name: str) -> bool:
        trans.execute("DELETE FROM topics WHERE name = ?", (name,))
        return trans.rowcount > 0

    def list_topics(self) -> Deferred:
        """
        Every stored topic, by name.
        """
        d = self._run(False, self._list_topics)
        d.addCallback(self._listed)
        return d

    def _listed(self, result) -> list[Topic]:
        topics, unreadable = result
        for name in unreadable:
            self.log.warn("skipping topic {name}: its stored spec is unreadable", name=name)
        return topics

    @staticmethod
    def _list_topics(trans) -> tuple[list[Topic], list[str]]:
        trans.execute("SELECT name, spec FROM topics ORDER BY name")
        topics, unreadable = [], []
        for name, spec in trans.fetchall():
            try:
                topics.append(Topic.from_dict(json.loads(spec)))
            except (ValueError, TypeError, AttributeError):
                unreadable.append(name)
        return topics, unreadable


def _spec(topic: Topic) -> str:
    return json.dumps(topic.to_dict(), sort_keys=True, ensure_ascii=False)
