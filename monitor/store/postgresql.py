"""
The shared store: the posts seam (L{monitor.interfaces.IStore}) on
PostgreSQL, through txpostgres (psycopg2 in asynchronous mode, polled by the
reactor: no thread per query).

Several hubs may write one database: a batch is one transaction with an
idempotency token, so a batch retried after a lost connection, whether or not
its first commit reached the server, is applied exactly once.  Posts are
written with one multi-row C{INSERT ... ON CONFLICT (uid) DO NOTHING}
(asynchronous psycopg2 refuses C{executemany}); every value is quoted by the
driver (C{mogrify}), only fixed column names are composed.

Full-text search tokenises in Python exactly as the SQLite store's FTS5
C{unicode61 remove_diacritics} tokenizer does (runs of letters and digits,
lower-cased, accents removed) and stores the lexemes with their positions in
a C{tsvector} column under a GIN index; C{q=} becomes a C{tsquery} of the
same tokens (words ANDed, phrases with C{<->}, C{word*} as C{word:*}), so a
search finds the same posts on either store and does not depend on the
server's locale or text search configuration.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections import Counter
from typing import Any, Optional

import psycopg2
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from txpostgres import txpostgres
from zope.interface import implementer

from monitor.config import default
from monitor.interfaces import IStore
from monitor.model import LABELS, SENTIMENTS, Post, Rejected, Topic, iso8601
from monitor.service import InFlight
from monitor.store import MAX_LIMIT, QUERY_SCAN, PostQuery, StatsQuery, check_story
from monitor.store.interfaces import IPostReads
from monitor.store.migrations import SchemaVersionError
from monitor.store.postgresql_pages import PostgreSQLPageReads

# Shared with the SQLite store: the API shape of a row, page cursors, input
# checks, hashtags and terms, so both stores answer alike.
from monitor.store.sqlite import (
    _FTS_PART,
    _SEARCHABLE,
    _CONTROL,
    _SELECT_POST,
    StoreBasics,
    _Scope as _SQLiteScope,
    _time_range as _sqlite_time_range,
    _check_count,
    _check_range,
    _decode_cursor,
    _encode_cursor,
    _letter_row,
    _post_dict,
    _query_page,
    _query_tree,
    _row_matches,
    _spec,
    hashtags,
    share_of_voice,
    terms,
)

__all__ = ["PostgreSQLStore", "MIGRATIONS", "run_blocking", "search_tokens", "tsquery", "tsvector"]

#: The stats' top terms are counted over the newest this many posts in range
#: (the SQLite store counts them exactly from its rollups; this store has
#: none yet).
TERMS_SAMPLE = 20_000

#: How many rows one multi-row INSERT carries.
_ROWS_PER_INSERT = 500

#: Longest wait between two attempts after a lost connection.
MAX_RETRY_DELAY = 5.0

#: How long a read (an API request) keeps retrying before it fails.
READ_RETRY_FOR = 10.0

#: How long an idempotency token of a batch is kept: far longer than any
#: retry of that batch can take.
TOKEN_TTL = 24 * 3600.0

# PostgreSQL limits: a lexeme of at most 2047 bytes, positions up to 16383,
# at most 256 positions per lexeme.
_LEXEME_BYTES = 2047
_MAX_POSITION = 16383
_MAX_POSITIONS = 256

_V1 = """
CREATE TABLE posts (
    id BIGSERIAL PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    network TEXT NOT NULL,
    native_id TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    url TEXT,
    lang TEXT,
    likes BIGINT NOT NULL DEFAULT 0,
    reposts BIGINT NOT NULL DEFAULT 0,
    replies BIGINT NOT NULL DEFAULT 0,
    author_followers BIGINT,
    author_verified BOOLEAN NOT NULL DEFAULT false,
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION,
    compound DOUBLE PRECISION,
    pos DOUBLE PRECISION,
    neu DOUBLE PRECISION,
    neg DOUBLE PRECISION,
    sentiment TEXT,
    -- ' complaint question ', as in the SQLite store.
    labels TEXT NOT NULL DEFAULT '',
    sentiment_by TEXT,
    -- JSON list of topic names; the searchable copy is post_topics.
    topics TEXT NOT NULL DEFAULT '[]',
    received_at DOUBLE PRECISION,
    stored_at DOUBLE PRECISION NOT NULL,
    story TEXT,
    search TSVECTOR NOT NULL
);
CREATE INDEX posts_created ON posts (created_at, id);
CREATE INDEX posts_source_created ON posts (source, created_at);
CREATE INDEX posts_sentiment_created ON posts (sentiment, created_at);
CREATE INDEX posts_author ON posts (author);
CREATE INDEX posts_story_created ON posts (story, created_at) WHERE story IS NOT NULL;
CREATE INDEX posts_search ON posts USING GIN (search);

CREATE TABLE post_topics (
    post_id BIGINT NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (post_id, topic)
);
CREATE INDEX post_topics_topic_created ON post_topics (topic, created_at, post_id);

CREATE TABLE post_tags (
    post_id BIGINT NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (post_id, tag)
);
CREATE INDEX post_tags_created ON post_tags (created_at, tag);

CREATE TABLE cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE topics (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('file', 'web')),
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    error TEXT NOT NULL,
    context TEXT NOT NULL,
    raw BYTEA NOT NULL
);
CREATE INDEX dead_letters_source ON dead_letters (source, id);

CREATE TABLE source_counters (
    source TEXT PRIMARY KEY,
    posts BIGINT NOT NULL DEFAULT 0,
    malformed BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE story_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    saved_at DOUBLE PRECISION NOT NULL
);

-- One row per batch written in the last TOKEN_TTL: a batch retried after a
-- lost connection whose commit did reach the server is not applied twice.
CREATE TABLE store_batches (
    token TEXT PRIMARY KEY,
    -- The uids it inserted, a JSON array.
    stored TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX store_batches_at ON store_batches (at);
"""

# The web UI's people, their sessions, pre-login forms and API tokens
# (monitor.store.postgresql_accounts), shared by every hub on the database.
# Only hashes of secrets are kept.  Names and keys compare byte by byte
# (COLLATE "C"), as on SQLite.
_V2_ACCOUNTS = """
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_login_at DOUBLE PRECISION
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_seen ON sessions (last_seen_at);

CREATE TABLE login_forms (
    id_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX login_forms_created ON login_forms (created_at);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    last_used_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
"""

# What is learned from people (monitor.store.postgresql_learning): their
# corrections of posts (one row per post uid, labels a JSON object), every
# trained model version as JSON, and the models an admin switched off.  At
# most one version of a model is active: the partial unique index says so.
_V3_LEARNING = """
CREATE TABLE post_feedback (
    post_uid TEXT COLLATE "C" PRIMARY KEY,
    sentiment TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    "by" TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX post_feedback_updated ON post_feedback (updated_at, post_uid);

CREATE TABLE learned_models (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    version TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('active', 'inactive')),
    model TEXT NOT NULL,
    examples BIGINT NOT NULL,
    evaluation TEXT NOT NULL,
    trained_through DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    activated_at DOUBLE PRECISION,
    activated_by TEXT
);
CREATE INDEX learned_models_name ON learned_models (name, language, id);
CREATE UNIQUE INDEX learned_models_one_active ON learned_models (name, language) WHERE state = 'active';

CREATE TABLE learned_holds (
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    "by" TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, language)
);
"""

# Alerts (L{monitor.store.postgresql_alerts}), shared by every hub: rules,
# incidents, the notification outbox with every delivery attempt, and
# channels disabled by their receiver; as in the SQLite file, plus the
# claim a hub holds on a notification while it delivers it.
_V4_ALERTS = """
CREATE TABLE alert_rules (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('file', 'web')),
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE alert_incidents (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    type TEXT NOT NULL,
    topic TEXT,
    source TEXT,
    severity TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    clock TEXT NOT NULL CHECK (clock IN ('posts', 'wall')),
    opened_at DOUBLE PRECISION NOT NULL,
    last_hit_at DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION,
    resolved_by TEXT,
    acknowledged_at DOUBLE PRECISION,
    acknowledged_by TEXT,
    cooldown DOUBLE PRECISION NOT NULL,
    escalated INTEGER NOT NULL DEFAULT 0,
    posts BIGINT NOT NULL DEFAULT 0,
    hits BIGINT NOT NULL DEFAULT 0,
    signal TEXT NOT NULL DEFAULT '{}',
    peak TEXT NOT NULL DEFAULT '{}',
    samples TEXT NOT NULL DEFAULT '[]',
    updated_at DOUBLE PRECISION NOT NULL,
    backfill INTEGER NOT NULL DEFAULT 0,
    explanation TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_incidents_opened ON alert_incidents (opened_at, id);
CREATE INDEX alert_incidents_state ON alert_incidents (state, opened_at);

CREATE TABLE alert_notifications (
    id TEXT PRIMARY KEY,
    -- The order notifications were stored in (SQLite's rowid).
    seq BIGSERIAL NOT NULL,
    incident_id TEXT NOT NULL REFERENCES alert_incidents (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    last_error TEXT,
    -- The hub delivering it now, and until when (the database's clock):
    -- no other hub takes it before.
    claimed_by TEXT,
    claimed_until DOUBLE PRECISION
);
CREATE INDEX alert_notifications_pending ON alert_notifications (state, created_at, seq);
CREATE INDEX alert_notifications_incident ON alert_notifications (incident_id, created_at, seq);

CREATE TABLE alert_attempts (
    id BIGSERIAL PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES alert_notifications (id) ON DELETE CASCADE,
    at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    seconds DOUBLE PRECISION,
    -- An attempt recorded again (a commit whose answer was lost) is one.
    UNIQUE (notification_id, at, outcome)
);

CREATE TABLE alert_channels (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    disabled_reason TEXT,
    disabled_at DOUBLE PRECISION
);
"""

#: The PostgreSQL schema steps, oldest first, kept in C{schema_version}; only
#: ever appended, like the SQLite store's.
MIGRATIONS: tuple[str, ...] = (_V1, _V2_ACCOUNTS, _V3_LEARNING, _V4_ALERTS)

# A lock number of our own, so two hubs starting on one new database
# migrate it one after the other.
_MIGRATION_LOCK = 0x6D6F6E69746F72  # "monitor"

_POST_COLUMNS = (
    "uid", "source", "network", "native_id", "author", "text",
    "created_at", "url", "lang", "likes", "reposts", "replies",
    "author_followers", "author_verified", "lat", "lon",
    "compound", "pos", "neu", "neg", "sentiment", "labels", "sentiment_by", "topics",
    "received_at", "stored_at", "story", "search",
)  # fmt: skip
_POST_VALUES = "(" + ", ".join(["%s"] * (len(_POST_COLUMNS) - 1)) + ", %s::tsvector)"

_MARKS = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_TOKEN = re.compile(r"[^\W_]+")


def search_tokens(text: str) -> list[str]:
    """
    The searchable tokens of C{text}, in order: runs of letters and digits,
    lower-cased, without accents (what FTS5's C{unicode61 remove_diacritics}
    makes of it).
    """
    folded = _MARKS.sub("", unicodedata.normalize("NFD", (text or "").lower()))
    return _TOKEN.findall(unicodedata.normalize("NFC", folded))


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def _fits(token: str) -> bool:
    return len(token.encode("utf-8")) <= _LEXEME_BYTES


def tsvector(text: str) -> str:
    """
    The C{tsvector} literal of C{text}: each token with its positions.
    """
    positions: dict[str, list[int]] = {}
    for at, token in enumerate(search_tokens(text), 1):
        if not _fits(token):
            continue
        seen = positions.setdefault(token, [])
        if len(seen) < _MAX_POSITIONS:
            seen.append(min(at, _MAX_POSITION))
    return " ".join(f"{_lexeme(t)}:{','.join(map(str, sorted(set(p))))}" for t, p in positions.items())


def tsquery(text: str) -> Optional[str]:
    """
    Search text typed by anyone as a C{tsquery} literal that cannot be
    malformed, with the meaning L{monitor.store.sqlite.fts_query} gives it
    on SQLite: words and C{"quoted phrases"} ANDed, a bare word ending in
    C{*} a prefix.  C{None} when nothing searchable is left; C{""} when a
    part can match no post (a token too long to be stored).
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
        tokens = search_tokens(phrase)
        if not tokens:
            continue
        if not all(_fits(t) for t in tokens):
            return ""
        lexemes = [_lexeme(t) for t in tokens]
        if prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts) or None


def _lost(failure_or_error) -> bool:
    """
    Whether an error means the connection (or the server) went away, so the
    transaction was rolled back or never reached the server: try again on a
    new connection.
    """
    error = getattr(failure_or_error, "value", failure_or_error)
    if isinstance(error, txpostgres.RollbackFailed):
        return True
    return isinstance(
        error, (psycopg2.OperationalError, psycopg2.InterfaceError, ConnectionDone, ConnectionLost, OSError)
    )


class _Scope(_SQLiteScope):
    """The SQLite store's scope of posts, in PostgreSQL's placeholders."""

    MARK, TRUE = "%s", "true"


def _time_range(column: str, since, until) -> tuple[list[str], list[float]]:
    return _sqlite_time_range(column, since, until, "%s")


def _post_rows(posts: list[Post], now: float) -> list[tuple]:
    rows = []
    for post in posts:
        analysis = post.analysis
        if analysis is None:
            scores = (None, None, None, None, None, "", None)
        else:
            labels = " ".join(analysis.labels)
            scores = (
                analysis.compound, analysis.pos, analysis.neu, analysis.neg, analysis.sentiment,
                f" {labels} " if labels else "", analysis.by,
            )  # fmt: skip
        rows.append(
            (
                post.uid, post.source, post.network, post.native_id, post.author, post.text,
                float(post.created_at), post.url, post.lang, int(post.likes or 0), int(post.reposts or 0),
                int(post.replies or 0), post.author_followers, bool(post.author_verified), post.lat, post.lon,
                *scores, json.dumps(sorted(set(post.topics))), post.received_at or None, now, post.story,
                tsvector(post.text),
            )
        )  # fmt: skip
    return rows


def _insert_posts(cursor, chunks: list[list[Post]], now: float) -> list[bytes]:
    """One multi-row INSERT of new posts per chunk, returning their ids."""
    head = f"INSERT INTO posts ({', '.join(_POST_COLUMNS)}) VALUES ".encode()
    return [
        head
        + _values(cursor, _POST_VALUES, _post_rows(chunk, now))
        + b" ON CONFLICT (uid) DO NOTHING RETURNING id, uid"
        for chunk in chunks
    ]


def _values(cursor, template: str, rows) -> bytes:
    """C{rows} as the VALUES list of one statement, quoted by the driver."""
    return b", ".join(cursor.mogrify(template, row) for row in rows)


def _chunks(items: list, size: int = _ROWS_PER_INSERT):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _merge_updates(updates) -> list[tuple]:
    """
    Late profiles as one row per uid, applied in order as the SQLite store
    does one by one: a handle or follower count that is unknown keeps the
    one before; verified is always the last said.
    """
    merged: dict[str, list] = {}
    for update in updates:
        for uid in update.uids:
            row = merged.get(uid)
            if row is None:
                merged[uid] = [update.author, update.author_followers, bool(update.author_verified)]
            else:
                if update.author is not None:
                    row[0] = update.author
                if update.author_followers is not None:
                    row[1] = update.author_followers
                row[2] = bool(update.author_verified)
    return [(author, followers, verified, uid) for uid, (author, followers, verified) in merged.items()]


def _interaction(function):
    """A coroutine function as a txpostgres interaction (which wants a Deferred)."""

    def run(cursor, *args):
        return ensureDeferred(function(cursor, *args))

    return run


class _BlockingCursor:
    """
    A psycopg2 cursor whose C{execute} blocks and returns a fired Deferred,
    so the store's coroutines run on it to the end at once, without a
    reactor (L{run_blocking}).
    """

    def __init__(self, cursor) -> None:
        self._cursor = cursor

    def execute(self, sql, params=None) -> Deferred:
        self._cursor.execute(sql, params)
        return succeed(None)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def _at_once(coroutine):
    """The result of a coroutine that awaits only fired Deferreds (or its error)."""
    outcome = []
    ensureDeferred(coroutine).addBoth(outcome.append)
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return result


def run_blocking(dsn: str, function, *args, connect_timeout: int = 10):
    """
    For the command line, before any reactor runs: bring the schema of the
    database at C{dsn} up to date (as a starting hub does), then run the
    coroutine C{function(cursor, *args)} in one transaction and return
    what it returns.
    """
    connection = psycopg2.connect(dsn, connect_timeout=connect_timeout)
    try:
        for version in range(1, len(MIGRATIONS) + 1):
            with connection, connection.cursor() as cursor:
                _at_once(PostgreSQLStore._migration(_BlockingCursor(cursor), version))
        with connection, connection.cursor() as cursor:
            return _at_once(function(_BlockingCursor(cursor), *args))
    finally:
        connection.close()


@implementer(IStore, IPostReads)
class PostgreSQLStore(StoreBasics, PostgreSQLPageReads, Service):
    """
    L{IStore} on a PostgreSQL database, with the pages' reads (L{IPostReads},
    L{monitor.store.postgresql_pages}).

    @ivar dsn: the libpq connection string or URI.
    @ivar pool_size: most connections open at once (and queries in flight).
    """

    log = Logger()

    def __init__(
        self, dsn: str, pool_size: int = default("store", "pool_size"), reactor=None, connect_timeout: float = 10.0
    ):
        if reactor is None:
            from twisted.internet import reactor
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size: must be a whole number of at least 1: {pool_size!r}")
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._reactor = reactor
        self._idle: list = []
        self._open = 0
        self._slots: list[Deferred] = []
        self._busy = 0
        self._threads: Optional[ThreadPool] = None
        self._outcome = None
        self._ready_waiters: list[Deferred] = []
        self._in_flight = InFlight()
        #: Connections lost and made again (for tests and metrics).
        self.reconnects = 0

    @property
    def where(self) -> str:
        """The database for people: the DSN without its password."""
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", self.dsn))

    # -- service -----------------------------------------------------------

    def startService(self):
        """
        Connect and migrate; the returned Deferred (and every later
        L{ready}) fires when the store can be used, or fails.
        """
        Service.startService(self)
        self._outcome = None
        self._threads = ThreadPool(0, 2, name="postgresql-store")
        self._threads.start()
        d = ensureDeferred(self._migrate())
        d.addCallbacks(self._started, self._start_failed)
        return self._in_flight.track(d)

    def stopService(self):
        """
        Let the work handed to the store finish, then close its connections.
        """
        Service.stopService(self)
        d = self._in_flight.idle()
        d.addCallback(self._stopped)
        return d

    def _stopped(self, _) -> None:
        self._close()
        self._outcome = None

    def _close(self) -> None:
        for connection in self._idle:
            self._quietly_close(connection)
        self._open -= len(self._idle)
        self._idle = []
        if self._threads is not None:
            self._threads.stop()
            self._threads = None

    def ready(self) -> Deferred:
        """
        A new Deferred firing once the schema is migrated, or failing like
        the start did.
        """
        if self._outcome is None:
            d = Deferred()
            self._ready_waiters.append(d)
            return d
        ok, failure = self._outcome
        return succeed(None) if ok else fail(failure)

    async def _migrate(self) -> tuple[list[int], int]:
        connection = await self._acquire()
        try:
            applied, current = [], 0
            for version in range(1, len(MIGRATIONS) + 1):
                done, current = await connection.runInteraction(_interaction(self._migration), version)
                if done:
                    applied.append(version)
            return applied, current
        finally:
            self._release(connection)

    @staticmethod
    async def _migration(cursor, version: int) -> tuple[bool, int]:
        """
        Apply step C{version} unless the database has it, in one
        transaction under an advisory lock: hubs starting together on a
        new database apply each step once.
        """
        await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        await cursor.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        current = int(cursor.fetchone()[0])
        if current > len(MIGRATIONS):
            raise SchemaVersionError(
                f"database has schema version {current} but this monitor knows PostgreSQL "
                f"versions up to {len(MIGRATIONS)}; run a newer monitor or point it at another database"
            )
        if current >= version:
            return False, current
        await cursor.execute(MIGRATIONS[version - 1])
        await cursor.execute("DELETE FROM schema_version")
        await cursor.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        return True, version

    def _started(self, result) -> None:
        applied, version = result
        for step in applied:
            self.log.info("applied PostgreSQL schema migration {version} to {where}", version=step, where=self.where)
        self.log.info("store {where} open at schema version {version}", where=self.where, version=version)
        self._set_outcome((True, None))

    def _start_failed(self, failure):
        self.log.failure("cannot open store {where}", failure=failure, where=self.where)
        self._close()
        self._set_outcome((False, failure))
        return failure

    # -- the pool ----------------------------------------------------------

    async def _acquire(self):
        """
        A connection of the pool; waits while C{pool_size} are in use.
        """
        if self._busy >= self.pool_size:
            slot = Deferred()
            self._slots.append(slot)
            await slot
        else:
            self._busy += 1
        try:
            if self._idle:
                return self._idle.pop()
            connection = txpostgres.Connection(reactor=self._reactor)
            d = connection.connect(self.dsn, connect_timeout=max(1, int(self.connect_timeout)))
            d.addTimeout(self.connect_timeout, self._reactor)
            await d
            self._open += 1
            return connection
        except BaseException:
            self._free_slot()
            raise

    def _free_slot(self) -> None:
        if self._slots:
            self._slots.pop(0).callback(None)  # the slot passes on
        else:
            self._busy -= 1

    def _release(self, connection, broken: bool = False) -> None:
        if broken:
            self._open -= 1
            self._quietly_close(connection)
        elif self.running or self._outcome is None:
            self._idle.append(connection)
        else:
            self._open -= 1
            self._quietly_close(connection)
        self._free_slot()

    @staticmethod
    def _quietly_close(connection) -> None:
        try:
            connection.close()
        except Exception:
            pass

    async def _attempt(self, interaction, args):
        connection = await self._acquire()
        try:
            result = await connection.runInteraction(interaction, *args)
        except BaseException as e:
            self._release(connection, broken=_lost(e))
            raise
        self._release(connection)
        return result

    async def _retrying(self, interaction, args, write: bool):
        """
        Run C{interaction} in a transaction; after a lost connection, again
        on a new one, with a growing pause: a write for as long as the store
        runs (the pipeline waits, nothing is dropped), a read for
        L{READ_RETRY_FOR} seconds.
        """
        delay = 0.05
        give_up = self._reactor.seconds() + READ_RETRY_FOR
        while True:
            try:
                return await self._attempt(interaction, args)
            except Exception as e:
                if not _lost(e) or not self.running or (not write and self._reactor.seconds() >= give_up):
                    raise
                self.reconnects += 1
                self.log.warn(
                    "lost the connection to {where} ({error}); trying again in {delay:.2f}s",
                    where=self.where,
                    error=str(e).strip() or type(e).__name__,
                    delay=delay,
                )
                await deferLater(self._reactor, delay, lambda: None)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    def _run(self, write: bool, function, *args) -> Deferred:
        """
        Run the coroutine C{function(cursor, *args)} in one transaction, once
        the store has started.
        """
        if self._outcome is None:
            if not self.running:
                return fail(RuntimeError("the store is not running"))
            d = self.ready()
            d.addCallback(lambda _: self._run(write, function, *args))
            return d
        ok, failure = self._outcome
        if not ok:
            return fail(failure)
        if not self.running:
            return fail(RuntimeError("the store is not running"))
        return self._in_flight.track(ensureDeferred(self._retrying(_interaction(function), args, write)))

    def run_read(self, function, *args) -> Deferred:
        """
        Run the coroutine C{function(cursor, *args)} in one transaction (for
        the providers of the other store areas over this pool); after a lost
        connection it is tried again for L{READ_RETRY_FOR} seconds.
        """
        return self._run(False, function, *args)

    def run_write(self, function, *args) -> Deferred:
        """
        As L{run_read}, tried again after a lost connection for as long as
        the store runs: C{function} must be safe to run twice when its
        first commit reached the server unanswered.
        """
        return self._run(True, function, *args)

    def _in_thread(self, function, *args) -> Deferred:
        """CPU work on rows (topic queries, terms) off the reactor thread."""
        return deferToThreadPool(self._reactor, self._threads, function, *args)

    # For the providers of the other store interfaces on this database
    # (L{monitor.store.postgresql_alerts}): its transactions, retries and
    # threads.
    transact = _run
    in_thread = _in_thread

    @property
    def reactor(self):
        return self._reactor

    # -- posts and cursors -------------------------------------------------

    def store_batch(self, posts, cursors, rejected=(), collected=None, updates=()) -> Deferred:
        """
        Store new posts, keep rejected payloads as dead letters, count, set
        late profiles and advance cursors in one transaction; fires with the
        uids of the posts newly stored (each once, in the order of C{posts}).
        """
        unique: dict[str, Post] = {}
        for post in posts:
            unique.setdefault(post.uid, post)
        rejected = list(rejected)
        letters = [_letter_row(r) for r in rejected]
        if collected is None:
            collected = Counter(post.source for post in posts)
        counts: dict[str, list[int]] = {source: [n, 0] for source, n in collected.items()}
        for r in rejected:
            counts.setdefault(r.source, [0, 0])[1] += 1
        batch = {
            "token": uuid.uuid4().hex,
            "posts": list(unique.values()),
            "cursors": dict(cursors or {}),
            "letters": letters,
            # In one order on every hub, so two hubs' batches wait for each
            # other rather than deadlock (a deadlock would be retried).
            "counts": [(source, n, bad) for source, (n, bad) in sorted(counts.items())],
            "authors": _merge_updates(updates),
        }
        return self._run(True, self._store_batch, batch, self._reactor.seconds, self._in_thread)

    @staticmethod
    async def _store_batch(cursor, batch: dict, clock, in_thread) -> list[str]:
        now = clock()
        await cursor.execute(
            "INSERT INTO store_batches (token, stored, at) VALUES (%s, '[]', %s) ON CONFLICT (token) DO NOTHING",
            (batch["token"], now),
        )
        if cursor.rowcount == 0:
            # Committed by an attempt whose answer the lost connection ate.
            await cursor.execute("SELECT stored FROM store_batches WHERE token = %s", (batch["token"],))
            return json.loads(cursor.fetchone()[0])
        for chunk in _chunks(batch["letters"]):
            await cursor.execute(
                b"INSERT INTO dead_letters (source, received_at, error, context, raw) VALUES "
                + _values(cursor, "(%s, %s, %s, %s, %s)", [(*row[:4], psycopg2.Binary(row[4])) for row in chunk])
            )
        if batch["counts"]:
            await cursor.execute(
                b"INSERT INTO source_counters AS c (source, posts, malformed) VALUES "
                + _values(cursor, "(%s, %s, %s)", batch["counts"])
                + b" ON CONFLICT (source) DO UPDATE SET posts = c.posts + excluded.posts, "
                b"malformed = c.malformed + excluded.malformed"
            )
        inserted: list[str] = []
        chunks = list(_chunks(batch["posts"]))
        # Building and quoting the rows is most of a batch's CPU: not on the
        # reactor thread.
        statements = await in_thread(_insert_posts, cursor, chunks, now)
        for chunk, statement in zip(chunks, statements):
            await cursor.execute(statement)
            ids = dict((uid, row_id) for row_id, uid in cursor.fetchall())
            topic_rows, tag_rows = [], []
            for post in chunk:
                row_id = ids.get(post.uid)
                if row_id is None:
                    continue
                inserted.append(post.uid)
                created_at = float(post.created_at)
                topic_rows.extend((row_id, topic, created_at) for topic in sorted(set(post.topics)))
                tag_rows.extend((row_id, tag, created_at) for tag in sorted(hashtags(post.text)))
            for table, column, rows in (("post_topics", "topic", topic_rows), ("post_tags", "tag", tag_rows)):
                for part in _chunks(rows, 2000):
                    await cursor.execute(
                        f"INSERT INTO {table} (post_id, {column}, created_at) VALUES ".encode()
                        + _values(cursor, "(%s, %s, %s)", part)
                    )
        if batch["authors"]:
            # After the inserts: a profile follows its posts in the queue.
            await cursor.execute(
                b"UPDATE posts SET author = coalesce(v.author::text, posts.author), "
                b"author_followers = coalesce(v.followers::bigint, posts.author_followers), "
                b"author_verified = v.verified::boolean FROM (VALUES "
                + _values(cursor, "(%s, %s, %s, %s)", batch["authors"])
                + b") AS v (author, followers, verified, uid) WHERE posts.uid = v.uid"
            )
        if batch["cursors"]:
            await cursor.execute(
                b"INSERT INTO cursors (source, cursor, updated_at) VALUES "
                + _values(cursor, "(%s, %s, %s)", [(s, c, now) for s, c in sorted(batch["cursors"].items())])
                + b" ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
            )
        await cursor.execute(
            "UPDATE store_batches SET stored = %s WHERE token = %s", (json.dumps(inserted), batch["token"])
        )
        await cursor.execute("DELETE FROM store_batches WHERE at < %s", (now - TOKEN_TTL,))
        return inserted

    def get_cursor(self, source: str) -> Deferred:
        """The saved position of C{source}, or C{None}."""
        return self._run(False, self._one, "SELECT cursor FROM cursors WHERE source = %s", (source,))

    @staticmethod
    async def _one(cursor, sql: str, params=()):
        await cursor.execute(sql, params)
        row = cursor.fetchone()
        return row[0] if row else None

    def count_posts(self) -> Deferred:
        """How many posts are stored."""
        return self._run(False, self._one, "SELECT count(*) FROM posts", ())

    def update_scores(self, changes) -> Deferred:
        """
        Write re-scored posts' C{(sentiment, sentiment_by, labels, id)}
        (labels as stored, space-delimited: C{" complaint question "}) in
        one transaction.  The statistics are counted from the posts here,
        so nothing else moves.
        """
        return self._run(True, self._update_scores, [tuple(row) for row in changes])

    @staticmethod
    async def _update_scores(cursor, rows) -> None:
        for row in rows:
            await cursor.execute("UPDATE posts SET sentiment = %s, sentiment_by = %s, labels = %s WHERE id = %s", row)

    # -- story state -------------------------------------------------------

    def story_state(self) -> Deferred:
        """
        The stories' saved state, or C{None}; parsed off the reactor.
        """
        d = self._run(False, self._one, "SELECT state FROM story_state WHERE id = 1", ())
        d.addCallback(lambda text: None if text is None else self._in_thread(json.loads, text))
        return d

    def save_story_state(self, state: str) -> Deferred:
        """Keep C{state} (JSON text) as the one saved state."""
        return self._run(True, self._save_story_state, state, self._reactor.seconds)

    @staticmethod
    async def _save_story_state(cursor, state: str, clock) -> None:
        await cursor.execute(
            "INSERT INTO story_state (id, state, saved_at) VALUES (1, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
            (state, clock()),
        )

    # -- dead letters ------------------------------------------------------

    def dead_letter(self, source: str, raw, error: str, context: str) -> Deferred:
        """Keep a payload that could not be read; fires with its id."""
        row = _letter_row(Rejected(source, raw, error, context, received_at=self._reactor.seconds()))
        return self._run(True, self._dead_letter, row)

    @staticmethod
    async def _dead_letter(cursor, row) -> int:
        await cursor.execute(
            "INSERT INTO dead_letters (source, received_at, error, context, raw) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id",
            (*row[:4], psycopg2.Binary(row[4])),
        )
        letter = cursor.fetchone()[0]
        await cursor.execute(
            "INSERT INTO source_counters AS c (source, posts, malformed) VALUES (%s, 0, 1) "
            "ON CONFLICT (source) DO UPDATE SET malformed = c.malformed + 1",
            (row[0],),
        )
        return letter

    def source_counters(self, source: str) -> Deferred:
        """C{{"posts": n, "malformed": m}} of C{source}, all time."""
        return self._run(False, self._source_counters, source)

    @staticmethod
    async def _source_counters(cursor, source: str) -> dict:
        await cursor.execute("SELECT posts, malformed FROM source_counters WHERE source = %s", (source,))
        row = cursor.fetchone()
        return {"posts": int(row[0]), "malformed": int(row[1])} if row else {"posts": 0, "malformed": 0}

    def dead_letters(self, source: Optional[str] = None, limit: int = 100) -> Deferred:
        """The newest dead letters, as JSON-ready dicts."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        return self._run(False, self._dead_letters, source, limit)

    @staticmethod
    async def _dead_letters(cursor, source, limit) -> list[dict]:
        sql = "SELECT id, source, received_at, error, context, raw FROM dead_letters"
        params: list = []
        if source is not None:
            sql += " WHERE source = %s"
            params.append(source)
        await cursor.execute(sql + " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [
            {
                "id": row_id,
                "source": source,
                "received_at": iso8601(received_at),
                "error": error,
                "context": context,
                "raw": bytes(raw).decode("utf-8", errors="replace"),
            }
            for row_id, source, received_at, error, context, raw in cursor.fetchall()
        ]

    # -- search ------------------------------------------------------------

    @staticmethod
    def _posts_scope(query: PostQuery) -> Optional[_Scope]:
        """
        The filters of C{query} (not its cursor), or C{None} when nothing
        can match.
        """
        _check_range(query)
        scope = _Scope(query.topic, query.since, query.until)
        if query.source is not None:
            scope.add("p.source = %s", query.source)
        if query.sentiment is not None:
            if query.sentiment not in SENTIMENTS:
                raise ValueError(f"sentiment: must be one of {', '.join(SENTIMENTS)}: {query.sentiment!r}")
            scope.add("p.sentiment = %s", query.sentiment)
        if query.label is not None:
            if query.label not in LABELS:
                raise ValueError(f"label: must be one of {', '.join(LABELS)}: {query.label!r}")
            scope.add("strpos(p.labels, %s) > 0", f" {query.label} ")
        if query.story is not None:
            scope.add("p.story = %s", check_story(query.story))
        if query.q is not None and query.q.strip():
            match = tsquery(query.q)
            if not match:
                return None  # only punctuation, or a word no post can hold
            scope.add("p.search @@ %s::tsquery", match)
        return scope

    @classmethod
    def _plan_posts(cls, query: PostQuery):
        limit = _check_count("limit", query.limit, MAX_LIMIT)
        scope = cls._posts_scope(query)
        tree = _query_tree(query)
        if scope is None:
            return None
        if query.cursor:
            scope.add(f"({scope.time}, {scope.id}) < (%s, %s)", *_decode_cursor(query.cursor))
        sql = (
            f"SELECT {_SELECT_POST} FROM {scope.tables} WHERE {scope.condition} "
            f"ORDER BY {scope.time} DESC, {scope.id} DESC LIMIT %s"
        )
        if tree is not None:
            return sql, (*scope.params, QUERY_SCAN + 1), limit, tree
        return sql, (*scope.params, limit + 1), limit, None

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
        sql, params, limit, tree = plan
        d = self._run(False, self._rows, sql, params)
        if tree is not None:
            d.addCallback(lambda rows: self._in_thread(_query_page, _Rows(rows), tree, limit))
        else:
            d.addCallback(lambda rows: self._in_thread(self._page, rows, limit))
        return d

    @staticmethod
    def _page(rows, limit):
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            following = _encode_cursor(rows[-1][6], rows[-1][-1])
        return [_post_dict(row) for row in rows], following

    @staticmethod
    async def _rows(cursor, sql, params) -> list:
        await cursor.execute(sql, params)
        return cursor.fetchall()

    def count_matching(self, query: PostQuery, most: int = 10_000) -> Deferred:
        """
        How many posts match C{query}'s filters, counting no further than
        C{most}.
        """
        try:
            scope = self._posts_scope(query)
            tree = _query_tree(query)
        except ValueError as e:
            return fail(e)
        if scope is None:
            return succeed(0)
        most = int(most)
        if tree is not None:
            sql = (
                f"SELECT {_SELECT_POST} FROM {scope.tables} WHERE {scope.condition} "
                f"ORDER BY {scope.time} DESC, {scope.id} DESC LIMIT %s"
            )
            d = self._run(False, self._rows, sql, (*scope.params, QUERY_SCAN))
            d.addCallback(
                lambda rows: self._in_thread(lambda: min(sum(1 for r in rows if _row_matches(tree, r)), most))
            )
            return d
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {scope.tables} WHERE {scope.condition} LIMIT %s) AS m"
        return self._run(False, self._one, sql, (*scope.params, most))

    # -- stats -------------------------------------------------------------

    def stats(self, query: StatsQuery) -> Deferred:
        """Aggregates of the posts of a topic (or all) in a time range."""
        try:
            _check_range(query)
            bucket = query.bucket
            if isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1:
                raise ValueError(f"bucket: must be a positive number of seconds: {bucket!r}")
            _check_count("top", query.top, MAX_LIMIT)
        except ValueError as e:
            return fail(e)
        return self._run(False, self._stats, query, self._in_thread)

    @classmethod
    async def _stats(cls, cursor, query: StatsQuery, in_thread) -> dict[str, Any]:
        # One snapshot for every number below.
        await cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        scope = _Scope(query.topic, query.since, query.until)
        where, params = scope.condition, scope.params
        bucket, top = query.bucket, query.top
        label_counts = ", ".join("count(*) FILTER (WHERE strpos(p.labels, %s) > 0)" for _ in LABELS)
        await cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE p.sentiment = %s), count(*) FILTER (WHERE p.sentiment = %s), "
            "count(*) FILTER (WHERE p.sentiment = %s), avg(p.compound), coalesce(sum(p.likes), 0)::bigint, "
            f"coalesce(sum(p.reposts), 0)::bigint, coalesce(sum(p.replies), 0)::bigint, {label_counts} "
            f"FROM {scope.tables} WHERE {where}",
            (*SENTIMENTS, *(f" {label} " for label in LABELS), *params),
        )
        count, positive, neutral, negative, average, likes, reposts, replies, *labels = cursor.fetchone()

        key = f"floor({scope.time} / %s)::bigint"
        await cursor.execute(
            f"SELECT {key} AS k, count(*), count(*) FILTER (WHERE p.sentiment = %s), "
            "count(*) FILTER (WHERE p.sentiment = %s), count(*) FILTER (WHERE p.sentiment = %s) "
            f"FROM {scope.tables} WHERE {where} GROUP BY k ORDER BY k",
            (bucket, *SENTIMENTS, *params),
        )
        volume = [
            {"start": iso8601(k * bucket), "count": n, **dict(zip(SENTIMENTS, (pos, neu, neg)))}
            for k, n, pos, neu, neg in cursor.fetchall()
        ]

        authors = (
            "SELECT p.author, max(p.author_followers) AS followers, count(*) AS n, avg(p.compound) "
            f"FROM {scope.tables} WHERE {where} GROUP BY p.author "
        )
        await cursor.execute(
            authors + "HAVING max(p.author_followers) IS NOT NULL "
            'ORDER BY followers DESC, n DESC, p.author COLLATE "C" LIMIT %s',
            (*params, top),
        )
        by_followers = cls._authors(cursor.fetchall())
        await cursor.execute(
            authors + 'ORDER BY n DESC, followers DESC NULLS LAST, p.author COLLATE "C" LIMIT %s', (*params, top)
        )
        by_posts = cls._authors(cursor.fetchall())

        top_hashtags = await cls._top_hashtags(cursor, query)
        await cursor.execute(
            f"SELECT p.text FROM {scope.tables} WHERE {where} ORDER BY {scope.time} DESC LIMIT %s",
            (*params, TERMS_SAMPLE),
        )
        top_terms = await in_thread(_top_terms, [text for (text,) in cursor.fetchall()], top)
        share = await cls._share_of_voice(cursor, query)
        return {
            "topic": query.topic,
            "since": iso8601(query.since) if query.since is not None else None,
            "until": iso8601(query.until) if query.until is not None else None,
            "bucket": bucket,
            "count": count,
            "sentiment": {
                **dict(zip(SENTIMENTS, (positive, neutral, negative))),
                "average_compound": average,
            },
            "labels": dict(zip(LABELS, labels)),
            "engagement": {"likes": int(likes), "reposts": int(reposts), "replies": int(replies)},
            "volume": volume,
            "top_authors": {"by_followers": by_followers, "by_posts": by_posts},
            "top_hashtags": top_hashtags,
            "top_terms": top_terms,
            "share_of_voice": share,
        }

    @staticmethod
    def _authors(rows) -> list[dict]:
        return [
            {"author": author, "followers": followers, "posts": n, "average_compound": average}
            for author, followers, n, average in rows
        ]

    @staticmethod
    async def _top_hashtags(cursor, query: StatsQuery) -> list[dict]:
        if query.topic is None:
            tables = "post_tags AS g"
            where, params = _time_range("g.created_at", query.since, query.until)
        else:
            tables = "post_topics AS s JOIN post_tags AS g ON g.post_id = s.post_id"
            where, params = _time_range("s.created_at", query.since, query.until)
            where, params = ["s.topic = %s", *where], [query.topic, *params]
        await cursor.execute(
            f"SELECT g.tag, count(*) AS n FROM {tables} WHERE {' AND '.join(where) or 'true'} "
            'GROUP BY g.tag ORDER BY n DESC, g.tag COLLATE "C" LIMIT %s',
            (*params, query.top),
        )
        return [{"tag": tag, "count": n} for tag, n in cursor.fetchall()]

    @staticmethod
    async def _share_of_voice(cursor, query: StatsQuery) -> Optional[dict]:
        if query.topic is None:
            return None
        specs = {}
        await cursor.execute("SELECT name, spec FROM topics")
        for name, spec in cursor.fetchall():
            try:
                specs[name] = json.loads(spec).get("group")
            except (ValueError, AttributeError):
                continue
        group = specs.get(query.topic)
        if group is None:
            return None
        members = sorted(name for name, g in specs.items() if g == group)
        counts = dict.fromkeys(members, 0)
        where, params = _time_range("created_at", query.since, query.until)
        await cursor.execute(
            f"SELECT topic, count(*) FROM post_topics WHERE {' AND '.join(['topic = ANY(%s)', *where])} GROUP BY topic",
            (members, *params),
        )
        counts.update(dict(cursor.fetchall()))
        return share_of_voice(group, counts, query.top)

    # -- topics ------------------------------------------------------------

    @staticmethod
    async def _sync_file_topics(cursor, rows) -> tuple[int, list[str]]:
        if rows:
            await cursor.execute(
                b"INSERT INTO topics (name, spec, origin, updated_at) VALUES "
                + _values(cursor, "(%s, %s, 'file', %s)", rows)
                + b" ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at "
                b"WHERE topics.origin = 'file' AND topics.spec IS DISTINCT FROM excluded.spec"
            )
        names = {name for name, _, _ in rows}
        await cursor.execute("SELECT name FROM topics WHERE origin = 'file'")
        stale = sorted(name for (name,) in cursor.fetchall() if name not in names)
        if stale:
            await cursor.execute("DELETE FROM topics WHERE origin = 'file' AND name = ANY(%s)", (stale,))
        return len(rows), stale

    def save_topic(self, topic: Topic, origin: str = "web") -> Deferred:
        """
        Create or replace one topic; saved with origin C{web}, the file no
        longer overwrites or removes it.
        """
        if origin not in ("file", "web"):
            return fail(ValueError(f"origin: must be 'file' or 'web': {origin!r}"))
        row = (topic.name, _spec(topic), origin, self._reactor.seconds())
        return self._run(True, self._save_topic, row)

    @staticmethod
    async def _save_topic(cursor, row) -> None:
        await cursor.execute(
            "INSERT INTO topics (name, spec, origin, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, origin = excluded.origin, "
            "updated_at = excluded.updated_at",
            row,
        )

    def delete_topic(self, name: str) -> Deferred:
        """Remove one topic; fires with whether it existed."""
        return self._run(True, self._delete_topic, name)

    @staticmethod
    async def _delete_topic(cursor, name: str) -> bool:
        await cursor.execute("DELETE FROM topics WHERE name = %s", (name,))
        return cursor.rowcount > 0

    def list_topics(self) -> Deferred:
        """Every stored topic, by name."""
        d = self._run(False, self._rows, 'SELECT name, spec FROM topics ORDER BY name COLLATE "C"', ())
        d.addCallback(self._listed)
        return d

    def _listed(self, rows) -> list[Topic]:
        topics = []
        for name, spec in rows:
            try:
                topics.append(Topic.from_dict(json.loads(spec)))
            except (ValueError, TypeError, AttributeError):
                self.log.warn("skipping topic {name}: its stored spec is unreadable", name=name)
        return topics


class _Rows:
    """Fetched rows with the C{fetchmany} of a cursor, for L{_query_page}."""

    def __init__(self, rows: list) -> None:
        self._rows = rows
        self._at = 0

    def fetchmany(self, size: int) -> list:
        part = self._rows[self._at : self._at + size]
        self._at += size
        return part


def _top_terms(texts: list[str], top: int) -> list[dict]:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(terms(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"term": term, "count": n} for term, n in ranked[:top]]
