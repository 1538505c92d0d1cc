"""
The accounts and learning areas on PostgreSQL beside SQLite: session
lookups (what every page request does) one at a time and many at once,
session refreshes, and re-scoring stored posts as the Rescorer does it
(read a batch, write its new labels).  Starts a throwaway PostgreSQL
server (tests.servers), like the tests.

    python bench/pg_areas.py [--lookups 2000] [--posts 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from monitor.learn.rescore import BATCH  # noqa: E402
from monitor.model import Analysis, Post  # noqa: E402
from monitor.store.postgresql import PostgreSQLStore  # noqa: E402
from monitor.store.postgresql_accounts import PostgreSQLAccounts  # noqa: E402
from monitor.store.postgresql_learning import PostgreSQLLearning  # noqa: E402
from monitor.store.sqlite import SQLiteStore  # noqa: E402
from monitor.store.sqlite_accounts import SQLiteAccounts  # noqa: E402
from monitor.store.sqlite_learning import SQLiteLearning  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402


async def sessions(name, accounts, n):
    await accounts.add_user("ann", "editor", "h", 0)
    uid = (await accounts.user_by_name("ann")).id
    for i in range(100):
        await accounts.open_session(f"k{i}", uid, "c", 0)
    t = time.perf_counter()
    for i in range(n):
        await accounts.sessions([f"k{i % 100}"])
    one = n / (time.perf_counter() - t)
    t = time.perf_counter()
    await defer.gatherResults([accounts.sessions([f"k{i % 100}"]) for i in range(n)])
    many = n / (time.perf_counter() - t)
    t = time.perf_counter()
    await defer.gatherResults([accounts.touch_session(f"k{i % 100}", i + 1) for i in range(n)])
    touches = n / (time.perf_counter() - t)
    print(f"{name}: session lookups {one:,.0f}/s one at a time, {many:,.0f}/s {n} at once; "
          f"refreshes {touches:,.0f}/s {n} at once")  # fmt: skip


async def rescoring(name, store, learning, n):
    posts = [Post(source="s", network="s", native_id=str(i), text=f"acme post {i}", author="a", created_at=1.7e9 + i,
                  analysis=Analysis(0.1, 0.0, 1.0, 0.0, "neutral", ())) for i in range(n)]  # fmt: skip
    for i in range(0, n, 2000):
        await store.store_batch(posts[i : i + 2000], {})
    t = time.perf_counter()
    last = done = 0
    while rows := await learning.scored_posts(last, BATCH):
        await learning.rescore([("negative", "model:x", " complaint ", r[0]) for r in rows])
        last, done = rows[-1][0], done + len(rows)
    print(f"{name}: re-scored {done:,} posts in batches of {BATCH}: {done / (time.perf_counter() - t):,.0f} posts/s")


async def main(reactor, options):
    sqlite = SQLiteStore(os.path.join(tempfile.mkdtemp(), "bench.sqlite"), reactor=reactor)
    await sqlite.startService()
    await sessions("sqlite", SQLiteAccounts(sqlite), options.lookups)
    await rescoring("sqlite", sqlite, SQLiteLearning(sqlite), options.posts)
    await sqlite.stopService()
    server = PostgresServer().start()
    try:
        store = PostgreSQLStore(server.dsn(server.create_database()), pool_size=4, reactor=reactor)
        await store.startService()
        await sessions("postgresql (pool 4)", PostgreSQLAccounts(store), options.lookups)
        await rescoring("postgresql (pool 4)", store, PostgreSQLLearning(store), options.posts)
        await store.stopService()
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--posts", type=int, default=20_000)
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
