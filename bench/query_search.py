"""
What a search with a topic query costs: C{GET /api/v1/posts?query=...}
reads the posts the other filters select and evaluates the query on each,
at most QUERY_SCAN (20,000) per page.  This stores N posts (the labelled
tweets of ../shared/data/vader_icwsm2014, repeated) in a real SQLite store
and times a page of a query that matches rarely (so the page reads all
QUERY_SCAN rows), one that matches often (the page fills at once), and the
count the posts page shows.

    python bench/query_search.py                 # 20,000 posts
    python bench/query_search.py --posts 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "vader_icwsm2014", "tweets_GroundTruth.txt")

from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.internet.task import react  # noqa: E402

from monitor.model import Post  # noqa: E402
from monitor.store import QUERY_SCAN, PostQuery  # noqa: E402
from monitor.store.sqlite import SQLiteStore  # noqa: E402

RARE = "(sad OR hate*) NEAR/2 (day OR work*) -giveaway"
OFTEN = "(good OR love* OR day) -giveaway"


def texts() -> list[str]:
    with open(DATA, encoding="utf-8") as f:
        return [line.rstrip("\r\n").split("\t")[2] for line in f if line.count("\t") >= 2]


async def main(reactor, options) -> None:
    corpus = texts()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.sqlite"), reactor=reactor)
        await store.startService()
        try:
            batch = []
            for i in range(options.posts):
                batch.append(Post(source="bench", network="bench", native_id=str(i), text=corpus[i % len(corpus)],
                                  author=f"user{i % 97}", created_at=1_700_000_000.0 + i, likes=i % 50,
                                  topics=("Acme",)))  # fmt: skip
                if len(batch) == 1000:
                    await store.store_batch(batch, {})
                    batch = []
            if batch:
                await store.store_batch(batch, {})
            print(f"{options.posts:,} posts stored; QUERY_SCAN = {QUERY_SCAN:,}")
            # (what, the call, whether it reads every row up to QUERY_SCAN)
            read_all = min(options.posts, QUERY_SCAN)
            for label, call, reads in [
                ("page, rare query", lambda: store.query_posts(PostQuery(query=RARE, limit=50)), read_all),
                ("page, frequent query", lambda: store.query_posts(PostQuery(query=OFTEN, limit=50)), None),
                ("count, rare query", lambda: store.count_matching(PostQuery(query=RARE), 10_001), read_all),
                ("page, no query (FTS q=monday)", lambda: store.query_posts(PostQuery(q="monday", limit=50)), None),
            ]:
                best = None
                for _ in range(options.rounds):
                    start = time.perf_counter()
                    result = await call()
                    took = time.perf_counter() - start
                    best = took if best is None else min(best, took)
                found = len(result[0]) if isinstance(result, tuple) else result
                per = f", {best / reads * 1e6:.1f} µs per post read" if reads else ""
                print(f"{label:32s} {best * 1000:8.1f} ms (best of {options.rounds}), {found} found{per}")
        finally:
            await store.stopService()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    react(lambda reactor: ensureDeferred(main(reactor, options)))
