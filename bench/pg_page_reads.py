"""
Latency of the pages' reads on PostgreSQL (L{monitor.store.postgresql_pages}:
the map, advocates and detractors, volume per topic, the newest posts,
trending terms) over one day of posts, on a throwaway server
(L{tests.servers.PostgresServer}) through a real reactor.

The posts (synthetic: 12 words of a small vocabulary, 2,000 authors, a
seventh placed on the map, half in two topics) are written with
C{store_batch}, 5,000 a batch.

    python bench/pg_page_reads.py [--posts 100000] [--calls 3]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402

from monitor.model import Analysis, Post  # noqa: E402
from monitor.store.postgresql import PostgreSQLStore  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

WORDS = (
    "refund outage battery life screen crash support slow billing delivery late great love broken charger app update"
).split()
T0 = 1.7e9
DAY = 86400.0


def posts(n: int):
    rng = random.Random(1)
    for i in range(n):
        c = rng.uniform(-1, 1)
        label = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
        placed = i % 7 == 0
        yield Post(source="s", network="s", native_id=str(i), author=f"u{i % 2000}", lang="en",
                   text="Acme " + " ".join(rng.choice(WORDS) for _ in range(12)), created_at=T0 + i * DAY / n,
                   topics=("Acme",) if i % 2 else ("Acme", "Globex"), lat=48.8 if placed else None,
                   lon=2.3 if placed else None, analysis=Analysis(c, 0.0, 1.0, 0.0, label, ()))  # fmt: skip


async def main(reactor, args) -> None:
    server = PostgresServer().start()
    try:
        store = PostgreSQLStore(server.dsn(server.create_database()), reactor=reactor)
        await store.startService()
        try:
            batch = []
            for post in posts(args.posts):
                batch.append(post)
                if len(batch) == 5000:
                    await store.store_batch(batch, {})
                    batch = []
            if batch:
                await store.store_batch(batch, {})
            since, until = T0, T0 + DAY
            calls = {
                "oldest_post(Acme, 30d)": lambda: store.oldest_post("Acme", until - 30 * DAY),
                "geo_posts(all, 24h)": lambda: store.geo_posts(None, since, until, 1000),
                "geo_posts(Acme, 24h)": lambda: store.geo_posts("Acme", since, until, 1000),
                "author_sentiment(all, 24h)": lambda: store.author_sentiment(None, since, until),
                "author_sentiment(Acme, 24h)": lambda: store.author_sentiment("Acme", since, until),
                "topic_volume(24h)": lambda: store.topic_volume(since, until),
                "recent_posts(2000)": lambda: store.recent_posts(2000),
                "term_counts(Acme, 24h)": lambda: store.term_counts("Acme", since, until, least=2),
            }
            print(f"{args.posts} posts over 24 h; best of {args.calls} calls")
            for name, call in calls.items():
                best = float("inf")
                for _ in range(args.calls):
                    started = time.perf_counter()
                    await call()
                    best = min(best, time.perf_counter() - started)
                print(f"{name:30s} {best * 1000:9.1f} ms")
        finally:
            # Its thread pool would keep the process alive.
            await store.stopService()
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=3)
    arguments = parser.parse_args()
    task.react(lambda reactor: ensureDeferred(main(reactor, arguments)))
