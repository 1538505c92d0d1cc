"""
What is PostgreSQL's own in L{monitor.store.postgresql}: its schema version,
its configuration checks, surviving a server restart mid-run, and the search
text it builds.  The IStore contract is in test_posts_contract.py.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.threads import deferToThread

from monitor.model import Rejected
from monitor.store.migrations import SchemaVersionError
from monitor.store.postgresql import MIGRATIONS, PostgreSQLStore, search_tokens, tsquery, tsvector
from tests.store.test_sqlite import make_post

pytestmark = pytest.mark.timeout(90)


def sql(dsn, statement):
    import psycopg2

    db = psycopg2.connect(dsn)
    try:
        with db.cursor() as cursor:
            cursor.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
        db.commit()
        return rows
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_migrates_an_empty_database(postgres_dsn, reactor):
    """A new database gets the latest schema version, the search column and its GIN index."""
    store = PostgreSQLStore(postgres_dsn, reactor=reactor)
    await store.startService()
    await store.stopService()
    assert sql(postgres_dsn, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    indexes = dict(sql(postgres_dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'posts'"))
    assert "USING gin (search)" in indexes["posts_search"]


@pytest_twisted.ensureDeferred
async def test_hubs_starting_together_migrate_once(postgres_dsn, reactor):
    """Three stores starting at once on a new database all open it; the schema is applied once."""
    from twisted.internet.defer import gatherResults

    stores = [PostgreSQLStore(postgres_dsn, pool_size=1, reactor=reactor) for _ in range(3)]
    await gatherResults([s.startService() for s in stores])
    try:
        await stores[0].store_batch([make_post(1)], {})
        assert [await s.count_posts() for s in stores] == [1, 1, 1]
    finally:
        await gatherResults([s.stopService() for s in stores])
    assert sql(postgres_dsn, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


@pytest_twisted.ensureDeferred
async def test_refuses_a_newer_database(postgres_dsn, reactor):
    """A schema version from a newer monitor is refused, not guessed at."""
    store = PostgreSQLStore(postgres_dsn, reactor=reactor)
    await store.startService()
    await store.stopService()
    sql(postgres_dsn, f"UPDATE schema_version SET version = {len(MIGRATIONS) + 1}")
    store = PostgreSQLStore(postgres_dsn, reactor=reactor)
    with pytest.raises(SchemaVersionError, match="newer monitor"):
        await store.startService()
    with pytest.raises(SchemaVersionError):
        await store.ready()
    await store.stopService()


@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_fails_the_start(tmp_path, reactor):
    """No server at the DSN: the start fails (the hub names store.dsn), with the password masked."""
    store = PostgreSQLStore(f"postgresql://monitor:s3cret@/nowhere?host={tmp_path}", reactor=reactor)
    assert "s3cret" not in store.where
    with pytest.raises(Exception, match="(?i)connect|socket|no such file"):
        await store.startService()
    await store.stopService()


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "4"])
def test_pool_size_must_be_a_positive_whole_number(size):
    """A bad pool size names pool_size."""
    with pytest.raises(ValueError, match="^pool_size: "):
        PostgreSQLStore("postgresql:///x", pool_size=size)


@pytest_twisted.ensureDeferred
async def test_a_server_restart_mid_run_loses_and_doubles_nothing(postgres_server, postgres_dsn, reactor):
    """
    Batches written while the server is stopped and started again wait,
    reconnect and are stored once each, with their counters and cursors.
    """
    store = PostgreSQLStore(postgres_dsn, pool_size=2, reactor=reactor)
    await store.startService()
    try:
        stored = []
        for n in range(12):
            if n == 4:
                await deferToThread(postgres_server.stop)
                # Started again while batch 4 is retrying.
                reactor.callLater(0.5, lambda: deferToThread(postgres_server.start))
            posts = [make_post(f"{n}-{i}", source="x") for i in range(40)]
            # Every other batch repeats half of the one before (a replay).
            if n % 2:
                posts += [make_post(f"{n - 1}-{i}", source="x") for i in range(20)]
            rejected = [Rejected("x", b"{", "bad json", f"batch {n}")]
            stored += await store.store_batch(posts, {"x": str(n)}, rejected)
        assert len(stored) == len(set(stored)) == 12 * 40
        assert await store.count_posts() == 12 * 40
        assert await store.get_cursor("x") == "11"
        assert await store.source_counters("x") == {"posts": 12 * 40 + 6 * 20, "malformed": 12}
        assert len(await store.dead_letters("x")) == 12
        assert store.reconnects >= 1
        assert sql(postgres_dsn, "SELECT count(*), count(DISTINCT uid) FROM posts") == [(480, 480)]
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_a_batch_retried_after_its_commit_is_applied_once(postgres_dsn, reactor):
    """
    When the commit reached the server but its answer was lost, the retry
    finds the batch's token and changes nothing (counters are not doubled).
    """
    store = PostgreSQLStore(postgres_dsn, reactor=reactor)
    await store.startService()
    try:
        batch = {
            "token": "t1",
            "posts": [make_post(1, source="x"), make_post(2, source="x")],
            "cursors": {"x": "2"},
            "letters": [],
            "counts": [("x", 2, 0)],
            "authors": [],
        }
        first = await store._run(True, store._store_batch, batch, reactor.seconds, store._in_thread)
        again = await store._run(True, store._store_batch, batch, reactor.seconds, store._in_thread)
        assert first == again == ["demo:1", "demo:2"]
        assert await store.source_counters("x") == {"posts": 2, "malformed": 0}
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_reads_wait_for_a_free_connection(postgres_dsn, reactor):
    """More queries than connections: they queue for the pool and all answer."""
    from twisted.internet.defer import gatherResults

    store = PostgreSQLStore(postgres_dsn, pool_size=2, reactor=reactor)
    await store.startService()
    try:
        await store.store_batch([make_post(i) for i in range(5)], {})
        counts = await gatherResults([store.count_posts() for _ in range(20)])
        assert counts == [5] * 20
        assert store._open <= 2
    finally:
        await store.stopService()


def test_search_tokens_fold_case_and_accents():
    """Tokens are runs of letters and digits, lower-cased, without accents, as FTS5's unicode61 makes them."""
    assert search_tokens("Le CAFÉ était-il fermé? x_y 3D 東京タワー") == [
        "le", "cafe", "etait", "il", "ferme", "x", "y", "3d", "東京タワー",
    ]  # fmt: skip
    assert tsvector("a b a") == "'a':1,3 'b':2"
    assert tsquery('acme "battery life" fix*') == "('acme') & ('battery' <-> 'life') & ('fix':*)"
    assert tsquery("* ( ) \" '") is None
    assert tsquery("o'neil") == "('o' <-> 'neil')"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_search_text_always_makes_a_valid_query(postgres_server, text):
    """Whatever the text, the tsvector and tsquery built from it are accepted by PostgreSQL."""
    import psycopg2

    db = psycopg2.connect(postgres_server.dsn())
    try:
        with db.cursor() as cursor:
            query = tsquery(text)
            cursor.execute("SELECT %s::tsvector @@ coalesce(%s, 'x')::tsquery", (tsvector(text), query or None))
            if query:
                assert cursor.fetchone()[0] is True
    finally:
        db.close()
