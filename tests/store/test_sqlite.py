"""
Tests for what is SQLite's own in L{monitor.store.sqlite} (its file, WAL,
FTS5 and migrations): a real SQLite file in C{tmp_path}, driven through the
real reactor and the adbapi thread pools.  What every IStore does is in
tests/store/test_posts_contract.py, run against this store too.
"""

import sqlite3

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from monitor.interfaces import IStore
from monitor.model import Analysis, Post
from monitor.store import MAX_LIMIT, PostQuery
from monitor.store.migrations import (
    MIGRATIONS,
    SchemaVersionError,
    migrate,
    split_statements,
)
from monitor.store.sqlite import SQLiteStore, fts_query, hashtags, terms

pytestmark = pytest.mark.timeout(60)

#: A multiple of 60, so one-minute buckets start on it.
T0 = 1_700_000_040.0


def make_post(
    native_id,
    text="hello world",
    *,
    created_at=T0,
    source="demo",
    topics=("acme",),
    sentiment="neutral",
    compound=0.0,
    labels=(),
    analysed=True,
    **kw,
):
    analysis = None
    if analysed:
        analysis = Analysis(
            compound=compound,
            pos=max(compound, 0.0),
            neu=1.0 - abs(compound),
            neg=max(-compound, 0.0),
            sentiment=sentiment,
            labels=tuple(labels),
        )
    return Post(
        source=source,
        network=kw.pop("network", "demo"),
        native_id=str(native_id),
        text=text,
        author=kw.pop("author", "someone"),
        created_at=created_at,
        topics=tuple(topics),
        analysis=analysis,
        received_at=created_at + 1,
        **kw,
    )


def connect(store):
    """
    A plain connection to the store's file, to look behind its back.
    """
    return sqlite3.connect(store.path)


async def all_pages(store, **filters):
    """
    Every post the filters match, page by page.
    """
    seen, cursor = [], None
    while True:
        page, cursor = await store.query_posts(PostQuery(cursor=cursor, **filters))
        seen.extend(page)
        if cursor is None:
            return seen


async def ids(store, **filters):
    page, _ = await store.query_posts(PostQuery(limit=MAX_LIMIT, **filters))
    return [p["native_id"] for p in page]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "var" / "monitor.sqlite"


@pytest_twisted.async_yield_fixture
async def store(path, reactor):
    service = SQLiteStore(path, reactor=reactor)
    await service.startService()
    yield service
    await service.stopService()


# -- schema and lifecycle ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_migrates_an_empty_database(store, path):
    """A new file gets its directory, the latest schema version and WAL mode."""
    assert path.exists()
    db = connect(store)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert {
        "posts",
        "post_topics",
        "post_tags",
        "posts_fts",
        "cursors",
        "topics",
        "dead_letters",
    } <= tables


def test_provides_istore(path):
    """The store provides the whole IStore interface."""
    assert verifyObject(IStore, SQLiteStore(path))


def test_refuses_an_in_memory_database():
    """Two pools on ':memory:' would be two databases, so it is refused."""
    with pytest.raises(ValueError):
        SQLiteStore(":memory:")


@pytest_twisted.ensureDeferred
async def test_reopen_is_idempotent(path, reactor):
    """Opening a migrated file again applies nothing and keeps the data."""
    first = SQLiteStore(path, reactor=reactor)
    await first.startService()
    await first.store_batch([make_post(1)], {"demo": "c1"})
    await first.stopService()

    second = SQLiteStore(path, reactor=reactor)
    await second.startService()
    try:
        assert await second.count_posts() == 1
        assert await second.get_cursor("demo") == "c1"
        await second.ready()
    finally:
        await second.stopService()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()


@pytest_twisted.ensureDeferred
async def test_refuses_a_newer_database(path, reactor):
    """A file from a newer schema fails the start with a clear error."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
    db.close()
    store = SQLiteStore(path, reactor=reactor)
    try:
        with pytest.raises(SchemaVersionError, match="newer monitor"):
            await store.startService()
        with pytest.raises(SchemaVersionError):
            await store.ready()
        with pytest.raises(SchemaVersionError):
            await store.count_posts()
    finally:
        await store.stopService()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    db.close()


def test_a_failed_migration_is_rolled_back(tmp_path):
    """A step that fails leaves the version and schema of the step before."""
    steps = (
        "CREATE TABLE one (x);",
        "CREATE TABLE two (x); INSERT INTO nowhere VALUES (1);",
    )
    db = sqlite3.connect(tmp_path / "m.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, "m.sqlite", steps)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"one"}
    assert migrate(db, "m.sqlite", steps[:1]) == []


def test_split_statements_keeps_trigger_bodies():
    """Semicolons inside a trigger body do not split the statement."""
    script = """
        CREATE TABLE t (x);
        CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
            SELECT 1; SELECT 2;
        END;
        -- a comment; with a semicolon
        CREATE INDEX t_x ON t (x);
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


@pytest_twisted.ensureDeferred
async def test_refuses_work_before_start(path, reactor):
    """A store that was never started fails calls instead of hanging them."""
    store = SQLiteStore(path, reactor=reactor)
    with pytest.raises(RuntimeError, match="not running"):
        await store.get_cursor("demo")


@pytest_twisted.ensureDeferred
async def test_calls_made_while_starting_wait_for_migrations(path, reactor):
    """Reads and writes issued right after start run once the schema exists."""
    store = SQLiteStore(path, reactor=reactor)
    started = store.startService()
    try:
        stored = store.store_batch([make_post(1)], {})
        counted = store.count_posts()
        assert await stored == ["demo:1"]
        assert await counted in (0, 1)
        await started
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_work_in_flight(path, reactor):
    """Stopping lets a batch already handed over commit before closing."""
    store = SQLiteStore(path, reactor=reactor)
    await store.startService()
    batch = store.store_batch([make_post(i) for i in range(300)], {"demo": "end"})
    await store.stopService()
    assert len(await batch) == 300
    with pytest.raises(RuntimeError, match="not running"):
        await store.count_posts()

    again = SQLiteStore(path, reactor=reactor)
    await again.startService()
    try:
        assert await again.count_posts() == 300
        assert await again.get_cursor("demo") == "end"
    finally:
        await again.stopService()


# -- store_batch and cursors ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stored_rows_keep_search_index_in_sync(store):
    """Topics, hashtags and full-text rows are written for new posts only."""
    posts = [
        make_post(1, "#Acme rocks #acme #ACME #1 &#39; x.com/#frag", topics=("b", "a")),
        make_post(2, "plain", topics=()),
    ]
    await store.store_batch(posts, {})
    await store.store_batch(posts, {})
    db = connect(store)
    try:
        assert db.execute("SELECT topic FROM post_topics ORDER BY topic").fetchall() == [
            ("a",),
            ("b",),
        ]
        assert db.execute("SELECT tag FROM post_tags").fetchall() == [("acme",)]
        db.execute("INSERT INTO posts_fts (posts_fts) VALUES ('integrity-check')")
        assert db.execute("SELECT count(*) FROM posts_fts").fetchone()[0] == 2
    finally:
        db.close()


# -- query_posts ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_posts_of_a_story(store, path):
    """story= selects a story's posts, newest first and page by page, through the (story, created_at) index."""
    posts = [make_post(i, f"post {i}", created_at=T0 + i, story="s1" if i % 3 else "s2") for i in range(1, 10)]
    posts.append(make_post(10, "no story", created_at=T0 + 10))
    await store.store_batch(posts, {})
    assert await ids(store, story="s2") == ["9", "6", "3"]
    assert await ids(store, story="s1", topic="acme", since=T0 + 4) == ["8", "7", "5", "4"]
    assert await ids(store, story="s404") == []
    page, following = await store.query_posts(PostQuery(story="s1", limit=4))
    rest, end = await store.query_posts(PostQuery(story="s1", limit=4, cursor=following))
    assert [p["native_id"] for p in page + rest] == ["8", "7", "5", "4", "2", "1"] and end is None
    assert await store.count_matching(PostQuery(story="s1")) == 6

    def plan(trans):
        sql, params, _ = SQLiteStore._plan_posts(PostQuery(story="s1"))
        return " ".join(row[-1] for row in trans.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())

    assert "posts_story_created" in await store.run_read(plan)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fts_query_is_always_valid(text):
    """Whatever the text, the FTS5 query built from it parses."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5 (x, tokenize='unicode61 remove_diacritics 2')")
    query = fts_query(text)
    if query is not None:
        db.execute("SELECT * FROM f WHERE f MATCH ?", (query,)).fetchall()


def test_fts_query_quotes_words_and_phrases():
    """Words and phrases become FTS5 strings; punctuation alone is dropped."""
    assert fts_query('acme "battery life" fix*') == '"acme" "battery life" "fix"*'
    assert fts_query('say "hi') == '"say" "hi"'
    assert fts_query('a"b') == '"a" "b"'
    assert fts_query("* ( ) \" '") is None


# -- stats ---------------------------------------------------------------


def test_terms_skip_noise():
    """Terms leave out stopwords, short words, URLs, handles and hashtags."""
    text = "It's the Battery's fault! See https://x.co/battery @battery_bot #battery ok 42abc"
    assert terms(text) == {"battery", "fault", "abc"}


def test_hashtags_are_normalised():
    """Hashtags are lower-cased, without '#', and not URL fragments or numbers."""
    text = "#Acme #ÉTÉ2024 a#b #1 https://x.co/#frag &#39; (#yes)"
    assert hashtags(text) == {"acme", "été2024", "yes"}
