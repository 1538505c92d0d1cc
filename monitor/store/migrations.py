"""
Versioned schema of the SQLite store.

C{MIGRATIONS[n]} takes a database from version C{n} to C{n + 1} (a script,
or a function of the connection for a step that needs Python); the version a
database has reached is kept in C{PRAGMA user_version}.  Migrations are only
ever appended: a released script is never edited, so every database, however
old, reaches the same schema by the same steps.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "SchemaVersionError", "split_statements", "migrate"]


class SchemaVersionError(RuntimeError):
    """
    The database was written by a newer monitor than this one: refuse it
    rather than guess at a schema we do not know.
    """


_V1 = """
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    network TEXT NOT NULL,
    native_id TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    url TEXT,
    lang TEXT,
    likes INTEGER NOT NULL DEFAULT 0,
    reposts INTEGER NOT NULL DEFAULT 0,
    replies INTEGER NOT NULL DEFAULT 0,
    author_followers INTEGER,
    author_verified INTEGER NOT NULL DEFAULT 0,
    lat REAL,
    lon REAL,
    compound REAL,
    pos REAL,
    neu REAL,
    neg REAL,
    sentiment TEXT,
    -- ' complaint question ': space-delimited on both sides so that one
    -- label is found with instr(labels, ' label ') and never by a prefix.
    labels TEXT NOT NULL DEFAULT '',
    -- JSON list of topic names, so a page of posts needs no join; the
    -- searchable copy is post_topics.
    topics TEXT NOT NULL DEFAULT '[]',
    received_at REAL,
    stored_at REAL NOT NULL
);
CREATE INDEX posts_created ON posts (created_at);
CREATE INDEX posts_source_created ON posts (source, created_at);
CREATE INDEX posts_sentiment_created ON posts (sentiment, created_at);
CREATE INDEX posts_author ON posts (author);

CREATE TABLE post_topics (
    post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (post_id, topic)
) WITHOUT ROWID;
CREATE INDEX post_topics_topic_created
    ON post_topics (topic, created_at, post_id);

CREATE TABLE post_tags (
    post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (post_id, tag)
) WITHOUT ROWID;
CREATE INDEX post_tags_created ON post_tags (created_at, tag);

CREATE VIRTUAL TABLE posts_fts USING fts5 (
    text,
    content = 'posts',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    columnsize = 0
);
CREATE TRIGGER posts_fts_insert AFTER INSERT ON posts BEGIN
    INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, text)
        VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER posts_fts_update AFTER UPDATE OF text ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, text)
        VALUES ('delete', old.id, old.text);
    INSERT INTO posts_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TABLE cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT,
    updated_at REAL NOT NULL
);

CREATE TABLE topics (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('file', 'web')),
    updated_at REAL NOT NULL
);

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    error TEXT NOT NULL,
    context TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE INDEX dead_letters_source ON dead_letters (source, id);
"""

# The web UI: people who log in, their sessions, and API tokens for
# machines.  Secrets are kept only as hashes (scrypt for passwords, SHA-256
# for random session ids and tokens).
_V2_WEB_USERS = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_login_at REAL
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
"""

# Alerts: rules (seeded from the file, edited through the API), incidents
# (times in the posts' own time), the notification outbox with every
# delivery attempt, and channels disabled by their receiver.
_V3_ALERTS = """
CREATE TABLE alert_rules (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('file', 'web')),
    updated_at REAL NOT NULL
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
    opened_at REAL NOT NULL,
    last_hit_at REAL NOT NULL,
    resolved_at REAL,
    resolved_by TEXT,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    cooldown REAL NOT NULL,
    escalated INTEGER NOT NULL DEFAULT 0,
    posts INTEGER NOT NULL DEFAULT 0,
    hits INTEGER NOT NULL DEFAULT 0,
    signal TEXT NOT NULL DEFAULT '{}',
    peak TEXT NOT NULL DEFAULT '{}',
    samples TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
);
CREATE INDEX alert_incidents_opened ON alert_incidents (opened_at, id);
CREATE INDEX alert_incidents_state ON alert_incidents (state, opened_at);

CREATE TABLE alert_notifications (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES alert_incidents (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    finished_at REAL,
    last_error TEXT
);
CREATE INDEX alert_notifications_pending ON alert_notifications (state, created_at);
CREATE INDEX alert_notifications_incident ON alert_notifications (incident_id, created_at);

CREATE TABLE alert_attempts (
    id INTEGER PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES alert_notifications (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    seconds REAL
);
CREATE INDEX alert_attempts_notification ON alert_attempts (notification_id, id);

CREATE TABLE alert_channels (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    disabled_reason TEXT,
    disabled_at REAL
);
"""

# Incidents opened by posts that arrived long after they were written (a
# replay, a catch-up after an outage) are history, not news: marked, shown,
# not notified.
_V4_BACKFILL = """
ALTER TABLE alert_incidents ADD COLUMN backfill INTEGER NOT NULL DEFAULT 0;
"""

# People's corrections of posts (monitor.learn.feedback): one row per post,
# the latest word on it, with who gave it and when; the learned models are
# trained on these.  labels is a JSON object, label name to true or false.
_V5_FEEDBACK = """
CREATE TABLE post_feedback (
    post_uid TEXT PRIMARY KEY,
    sentiment TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    by TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX post_feedback_updated ON post_feedback (updated_at, post_uid);
"""

# What each source has collected and found malformed, all time: updated in
# the transaction that stores the batch (or the dead letter), so a restart
# neither forgets nor counts twice.
_V6_SOURCE_COUNTERS = """
CREATE TABLE source_counters (
    source TEXT PRIMARY KEY,
    posts INTEGER NOT NULL DEFAULT 0,
    malformed INTEGER NOT NULL DEFAULT 0
);
"""

# Learned models (monitor.learn.learner): every trained version, as its
# JSON (never pickle), with its cross-validated figures; at most one active
# per name and language.  learned_holds: models an admin switched off.
# posts.sentiment_by: which answer the sentiment column is ('vader',
# 'model:VERSION', 'unscored'); NULL for posts stored before.
_V7_MODELS = """
CREATE TABLE learned_models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    version TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('active', 'inactive')),
    model TEXT NOT NULL,
    examples INTEGER NOT NULL,
    evaluation TEXT NOT NULL,
    trained_through REAL NOT NULL,
    created_at REAL NOT NULL,
    activated_at REAL,
    activated_by TEXT
);
CREATE INDEX learned_models_name ON learned_models (name, language, id);
CREATE TABLE learned_holds (
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    by TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (name, language)
);
ALTER TABLE posts ADD COLUMN sentiment_by TEXT;
"""

# The login form's pre-session: an anonymous row made when the form is
# served, whose CSRF token the POST must carry (login CSRF); short-lived
# and capped, see monitor.web.users.
_V8_LOGIN_FORMS = """
CREATE TABLE login_forms (
    id_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX login_forms_created ON login_forms (created_at);
"""

# Stories (monitor.stories): each stored post's story, searched by story
# newest first; and the clusterer's state, one row of JSON, so stories and
# their ids survive a restart.
_V9_STORIES = """
ALTER TABLE posts ADD COLUMN story TEXT;
CREATE INDEX posts_story_created ON posts (story, created_at);
CREATE TABLE story_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    saved_at REAL NOT NULL
);
"""

# Why an incident fired (monitor.alerts.explain): the rising stories and
# terms, top posts, sources and places, as JSON; '{}' for older incidents.
_V10_INCIDENT_EXPLANATION = """
ALTER TABLE alert_incidents ADD COLUMN explanation TEXT NOT NULL DEFAULT '{}';
"""


def _V11_ROLLUPS(connection) -> None:
    """
    Rollups of the stored posts for the statistics (L{monitor.store.rollups}):
    the tables, then every stored post counted into them.  A step in
    Python, since the terms of a text are counted in Python.
    """
    from monitor.store import sqlite_rollups

    for statement in split_statements(sqlite_rollups.TABLES):
        connection.execute(statement)
    sqlite_rollups.backfill(connection)


def _V12_MINUTES(connection) -> None:
    """
    Minutes of the rollups as one row per scope, minute and batch (JSON
    columns) instead of one row per key, and hours and days summed once
    they close (L{monitor.store.sqlite_rollups}): the V11 minute rows are
    moved, the newest hour and day reopened.
    """
    from monitor.store import sqlite_rollups

    for statement in split_statements(sqlite_rollups.MINUTES):
        connection.execute(statement)
    sqlite_rollups.minutes_from_rows(connection)


# The hour and day rows in order of use within each bucket, so that a top
# list reads each closed bucket's most used keys, not all of them
# (monitor.store.sqlite_rollups.leaders).
_V13_TOP_INDEXES = """
CREATE INDEX rollup_terms_top ON rollup_terms (scope, span, start, terms);
CREATE INDEX rollup_tags_top ON rollup_tags (scope, span, start, posts);
CREATE INDEX rollup_authors_top ON rollup_authors (scope, span, start, posts, followers, scored, compound);
CREATE INDEX rollup_authors_followers ON rollup_authors (scope, span, start, followers, posts, scored, compound);
"""


#: The schema steps, oldest first; the schema version is C{len(MIGRATIONS)}.
MIGRATIONS: tuple = (
    _V1,
    _V2_WEB_USERS,
    _V3_ALERTS,
    _V4_BACKFILL,
    _V5_FEEDBACK,
    _V6_SOURCE_COUNTERS,
    _V7_MODELS,
    _V8_LOGIN_FORMS,
    _V9_STORIES,
    _V10_INCIDENT_EXPLANATION,
    _V11_ROLLUPS,
    _V12_MINUTES,
    _V13_TOP_INDEXES,
)


def split_statements(script: str) -> list[str]:
    """
    Split a script into statements.  C{executescript} would commit first,
    so a migration runs its statements one by one inside its own
    transaction; C{sqlite3.complete_statement} knows that the semicolons in
    a trigger body do not end the statement.
    """
    statements = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if statement.strip(";").strip():
                statements.append(statement)
            pending = ""
    if pending.strip(";").strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()!r}")
    return statements


def user_version(connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection, path: str = "", migrations=MIGRATIONS) -> list[int]:
    """
    Bring the database of C{connection} up to date, one transaction per
    step, and return the versions applied.  Each step re-reads the version
    under the write lock, so two processes opening one new file do not both
    apply it.

    @raise SchemaVersionError: the database is newer than C{migrations}.
    """
    latest = len(migrations)
    current = user_version(connection)
    if current > latest:
        raise SchemaVersionError(
            f"database {path or '(unnamed)'} has schema version {current} but "
            f"this monitor knows versions up to {latest}; run a newer monitor "
            f"or point it at another database"
        )
    applied = []
    for version in range(current + 1, latest + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            if user_version(connection) >= version:
                connection.rollback()
                continue
            step = migrations[version - 1]
            if callable(step):
                step(connection)
            else:
                for statement in split_statements(step):
                    connection.execute(statement)
            # PRAGMA takes no parameters; version is an int of our own.
            connection.execute(f"PRAGMA user_version = {int(version)}")
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        applied.append(version)
    return applied
