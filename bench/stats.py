"""
Latency of the store's stats call (L{monitor.store.sqlite.SQLiteStore.stats},
the code behind C{/api/v1/stats}, on its reader pool through a real
reactor) over a big store: 24 hours and 7 days, all posts and one topic,
range edges inside minutes, repeated calls, p50 and p99.

The posts (real tweets from ../shared/data naming one of three brands,
spread evenly over 7 days, 50,000 authors of Zipf-like activity) are written
straight through the store's writer transaction (C{_store_batch}, the same
code a batch from the pipeline runs, rollups included), without the queue
and the analysis, so that millions are stored in minutes.

    python bench/stats.py [--posts 1000000] [--db PATH] [--calls 20] [--json out.json]

An existing C{--db} is reused (its posts are not written again).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import random
import sqlite3
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.model import LABELS, Analysis, Post  # noqa: E402
from monitor.store import StatsQuery  # noqa: E402
from monitor.store.migrations import MIGRATIONS, migrate  # noqa: E402
from monitor.store.sqlite import SQLiteStore, _configure  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BRANDS = ("acme", "globex", "initech")
#: The newest post's time: the 7 days before it hold every post.
END = 1_700_000_000.0
WEEK = 7 * 86400


def texts() -> list[str]:
    out = []
    with open(DATA / "complaints" / "complaints-data.csv", encoding="utf-8", newline="") as f:
        out += [row[1] for row in csv.reader(f)]
    with open(DATA / "vader_icwsm2014" / "tweets_GroundTruth.txt", encoding="utf-8", newline="") as f:
        out += [line.split("\t", 2)[2] for line in f.read().splitlines()]
    return out


def generate(path: str, n: int, batch: int = 500, spread: float = WEEK) -> float:
    """
    Write n posts, evenly over C{spread} seconds before L{END}, through the
    store's writer transaction in batches of C{batch}; returns posts/s.
    """
    rng = random.Random(1)
    bodies = texts()
    authors = [f"author{i}" for i in range(50_000)]
    weights = [1 / (i + 1) for i in range(len(authors))]
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    _configure(db, read_only=False)
    migrate(db, path, MIGRATIONS)
    started = time.perf_counter()
    step = spread / n
    for first in range(0, n, batch):
        count = min(batch, n - first)
        chosen = rng.choices(authors, weights, k=count)
        posts = []
        for j in range(count):
            i = first + j
            brand = BRANDS[i % 3]
            compound = rng.uniform(-1, 1)
            sentiment = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
            labels = tuple(label for label in LABELS if rng.random() < 0.1)
            posts.append(Post(
                source=("x", "mastodon", "bluesky")[i % 3], network="bench", native_id=str(i),
                text=f"{brand.title()} {rng.choice(bodies)}", author=chosen[j], created_at=END - spread + i * step,
                topics=(brand,), analysis=Analysis(compound, max(compound, 0), 1 - abs(compound), max(-compound, 0),
                                                   sentiment, labels),
                likes=rng.randrange(20), reposts=rng.randrange(5), replies=rng.randrange(3),
                author_followers=rng.randrange(1_000_000), lang="en",
            ))  # fmt: skip
        cursor = db.cursor()
        SQLiteStore._store_batch(cursor, posts, {}, time.time)
        db.execute("COMMIT")
        if first // batch % 50 == 0:
            done = first + count
            print(f"  {done:,} posts, {done / (time.perf_counter() - started):,.0f}/s", flush=True)
    rate = n / (time.perf_counter() - started)
    db.close()
    return rate


def sizes(path: str) -> dict:
    db = sqlite3.connect(path)
    out = {}
    try:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'rollup_%'"):
            rows = db.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            out[name] = rows
        try:
            pages = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
            out["rollup_bytes"] = sum(v for k, v in pages.items() if k.startswith("rollup_") or "autoindex_rollup" in k)
            out["posts_bytes"] = sum(v for k, v in pages.items() if not k.startswith("rollup_"))
        except sqlite3.OperationalError:
            pass
    finally:
        db.close()
    return out


def measure(path: str, calls: int, results: dict) -> dict:
    from twisted.internet import defer, task

    async def main(reactor):
        store = SQLiteStore(path, reactor=reactor)
        await store.startService()
        try:
            for name, span in (("24h", 86400), ("7d", WEEK)):
                for topic in (None, "acme"):
                    times = []
                    for k in range(calls):
                        # Edges inside minutes, moving a little each call.
                        until = END - 17.25 - k * 7.5
                        query = StatsQuery(topic=topic, since=until - span, until=until,
                                           bucket=1800 if span == 86400 else 3 * 3600, top=100)  # fmt: skip
                        started = time.perf_counter()
                        stats = await store.stats(query)
                        times.append(time.perf_counter() - started)
                    times.sort()
                    key = f"{name} {topic or 'all'}"
                    results[key] = {
                        "posts": stats["count"],
                        "p50_ms": round(times[len(times) // 2] * 1000, 1),
                        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1000, 1),
                    }
                    print(f"  {key}: {results[key]}", flush=True)
        finally:
            await store.stopService()

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/bench-stats.sqlite")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    result: dict = {"posts": args.posts}
    if not os.path.exists(args.db):
        result["write_posts_per_s"] = round(generate(args.db, args.posts))
        print(f"wrote {args.posts:,} posts at {result['write_posts_per_s']:,} posts/s", flush=True)
    result["rows"] = sizes(args.db)
    print(json.dumps(result["rows"]), flush=True)
    result["latency"] = {}
    try:
        measure(args.db, args.calls, result["latency"])
    except SystemExit:
        pass
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
