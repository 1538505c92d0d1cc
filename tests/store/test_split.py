"""
L{monitor.store.split.SplitStore}, the hub's store with C{kind =
"postgresql"}: the posts seam from PostgreSQL, C{run_read}/C{run_write}
from the SQLite file, started and stopped in that order.
"""

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from monitor.interfaces import IStore
from monitor.model import Topic
from monitor.store import PostQuery
from monitor.store.interfaces import IPostReads
from monitor.store.postgresql import PostgreSQLStore
from monitor.store.postgresql_accounts import PostgreSQLAccounts
from monitor.store.split import SplitStore
from monitor.store.sqlite import SQLiteStore
from tests.store.test_sqlite import make_post

pytestmark = pytest.mark.timeout(60)


@pytest_twisted.ensureDeferred
async def test_posts_go_to_postgresql_and_sql_to_the_file(postgres_dsn, tmp_path, reactor):
    """IStore calls reach PostgreSQL; run_read/run_write reach the SQLite file; both stop."""
    posts, rest = PostgreSQLStore(postgres_dsn, reactor=reactor), SQLiteStore(tmp_path / "m.sqlite", reactor=reactor)
    store = SplitStore(posts, rest)
    assert verifyObject(IStore, store) and verifyObject(IPostReads, store)
    await store.startService()
    try:
        await store.ready()
        assert await store.store_batch([make_post(1, "hello café")], {"demo": "c1"}) == ["demo:1"]
        await store.sync_file_topics([Topic("acme", terms=("acme",))])
        await store.save_topic(Topic("web", terms=("w",)))
        assert [t.name for t in await store.list_topics()] == ["acme", "web"]
        assert await posts.count_posts() == 1
        assert await store.get_cursor("demo") == "c1"
        page, _ = await store.query_posts(PostQuery(q="cafe"))
        assert [p["native_id"] for p in page] == ["1"]
        assert await store.count_matching(PostQuery(q="cafe")) == 1
        # The pages' reads too.
        assert [p.uid for p in await store.recent_posts(5)] == ["demo:1"]
        assert set(await store.topic_origins()) == {"acme", "web"}
        # The file: no posts, and SQL of its own works there.
        assert await store.run_read(lambda t: t.execute("SELECT count(*) FROM posts").fetchone()[0]) == 0
        await store.run_write(lambda t: t.execute("INSERT INTO cursors VALUES ('file', 'x', 0)"))
        assert await rest.get_cursor("file") == "x"
        assert await store.get_cursor("file") is None
    finally:
        await store.stopService()
    assert not posts.running and not rest.running


@pytest_twisted.ensureDeferred
async def test_work_handed_to_postgresql_while_starting_waits_for_it(postgres_dsn, tmp_path, reactor):
    """Accounts asked for while the split store starts (a login page served early) get their answer, not an error."""
    posts, rest = PostgreSQLStore(postgres_dsn, reactor=reactor), SQLiteStore(tmp_path / "m.sqlite", reactor=reactor)
    store = SplitStore(posts, rest)
    started = store.startService()
    try:
        assert await PostgreSQLAccounts(posts).count_users() == 0
        await started
    finally:
        await store.stopService()
