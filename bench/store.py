"""
The store alone: N analysed posts written in batches through
IStore.store_batch, on SQLite and on PostgreSQL (a throwaway server from
tests/servers.py, or --dsn of an empty database), the same posts in the same
run; then a few searches timed on each.

    python bench/store.py [--posts 20000] [--batch-size 500] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402

from bench.pipeline import texts  # noqa: E402
from monitor.model import Analysis, Post  # noqa: E402
from monitor.store import PostQuery, StatsQuery  # noqa: E402
from monitor.store.postgresql import PostgreSQLStore  # noqa: E402
from monitor.store.sqlite import SQLiteStore  # noqa: E402

SEARCHES = ("acme", '"battery life"', "refund*", "love great")


def posts(n: int) -> list[Post]:
    analysis = Analysis(compound=0.1, pos=0.2, neu=0.7, neg=0.1, sentiment="positive", labels=("question",))
    return [
        Post(source="bench", network="demo", native_id=str(i), text=text, author=f"u{i % 500}",
             created_at=1.7e9 + i, topics=("Acme",), analysis=analysis, received_at=1.7e9 + i)
        for i, text in enumerate(texts(n))
    ]  # fmt: skip


async def measure(store, batch: list[list[Post]]) -> dict:
    await store.startService()
    try:
        started = time.perf_counter()
        for i, part in enumerate(batch):
            await store.store_batch(part, {"bench": str(i)})
        write = time.perf_counter() - started
        n = sum(len(p) for p in batch)
        result = {"posts_per_s": round(n / write)}
        for q in SEARCHES:
            started = time.perf_counter()
            await store.query_posts(PostQuery(q=q, limit=50))
            result[f"q={q} ms"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        await store.stats(StatsQuery(topic="Acme"))
        result["stats ms"] = round((time.perf_counter() - started) * 1000, 1)
        return result
    finally:
        await store.stopService()


async def main(reactor, args) -> None:
    every = posts(args.posts)
    batches = [every[i : i + args.batch_size] for i in range(0, len(every), args.batch_size)]
    server = None
    dsn = args.dsn
    if not dsn:
        from tests.servers import PostgresServer

        server = PostgresServer().start()
        dsn = server.dsn(server.create_database())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {
                "sqlite": await measure(SQLiteStore(pathlib.Path(tmp) / "bench.sqlite", reactor=reactor), batches),
                "postgresql": await measure(PostgreSQLStore(dsn, reactor=reactor), batches),
            }
    finally:
        if server is not None:
            server.close()
    for name, figures in results.items():
        print(name, " ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--dsn", default="")
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, parser.parse_args())))
