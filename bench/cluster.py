"""
The cluster's Redis parts, measured on a throwaway redis-server: how fast
what one hub stores reaches another hub (the stored-posts channel), and how
long a collector's lease takes to move when its hub dies.

    PYTHONPATH=. python bench/cluster.py [--batches 200] [--size 200] [--ttl 1.5]

Prints: the channel's throughput (posts/s from hub A's sink to hub B's
listener, batches of --size), the latency of a single post (p50, p99 of
--batches one-post batches, sent one at a time), the time from the
lease holder's last renewal to the other hub running the service, and how
fast one collector puts posts on the Redis queue (one XADD per post, each
awaited, as a collector's emit does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

from twisted.application.service import Service
from twisted.internet import defer, task
from zope.interface import implementer

sys.path.insert(0, ".")

from monitor.cluster import RedisCluster  # noqa: E402
from monitor.interfaces import ISink  # noqa: E402
from monitor.model import Analysis, Post  # noqa: E402
from monitor.queue.redis import RedisQueue, parse_redis_url  # noqa: E402
from tests.servers import RedisServer  # noqa: E402


@implementer(ISink)
class Arrivals:
    def __init__(self):
        self.count = 0
        self.waiter = None
        self.want = 0
        self.times = []

    def posts_stored(self, posts):
        self.count += len(posts)
        self.times.append(time.perf_counter())
        if self.waiter is not None and self.count >= self.want:
            d, self.waiter = self.waiter, None
            d.callback(None)

    def until(self, n):
        self.want = n
        if self.count >= n:
            return defer.succeed(None)
        self.waiter = defer.Deferred()
        return self.waiter


def post(n):
    p = Post(
        source="bench",
        network="bench",
        native_id=str(n),
        text=f"acme is down again, post {n} " * 3,
        author=f"user{n % 50}",
        created_at=1.7e9 + n,
    )
    p.topics = ("Acme",)
    p.analysis = Analysis(-0.5, 0.0, 0.6, 0.4, "negative", ("complaint",))
    return p


class Running(Service):
    pass


async def main(reactor, args):
    server = RedisServer().start()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    where = parse_redis_url(server.url)
    a = RedisCluster(where, "hub-a", reactor, ttl=args.ttl, prefix=prefix)
    b = RedisCluster(where, "hub-b", reactor, ttl=args.ttl, prefix=prefix)
    arrivals = Arrivals()
    b.add_listener(arrivals)
    a.startService()
    b.startService()
    try:
        await b.feed.when_subscribed()
        total = args.batches * args.size
        posts = [post(n) for n in range(total)]
        started = time.perf_counter()
        for i in range(args.batches):
            a.posts_stored(posts[i * args.size : (i + 1) * args.size])
            if a.feed.in_flight >= a.feed.max_in_flight - 1:
                await task.deferLater(reactor, 0.001)
        await arrivals.until(total)
        elapsed = time.perf_counter() - started
        print(
            f"channel: {total} posts in batches of {args.size}: {total / elapsed:,.0f} posts/s "
            f"({a.feed.dropped} dropped)"
        )
        latencies = []
        for i in range(args.batches):
            sent = time.perf_counter()
            a.posts_stored([post(total + i)])
            await arrivals.until(total + i + 1)
            latencies.append((arrivals.times[-1] - sent) * 1000)
        latencies.sort()
        print(
            f"one post, hub A's sink to hub B's listener: p50 {statistics.median(latencies):.2f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} ms"
        )

        service_a, service_b = Running(), Running()
        leased_a, leased_b = a.leased("collector:x", service_a), b.leased("collector:x", service_b)
        leased_a.startService()
        while not leased_a.holding:
            await task.deferLater(reactor, 0.01)
        leased_b.startService()
        await task.deferLater(reactor, args.ttl / 2)
        leased_a._loop.stop()  # hub A freezes: no more renewals
        last = leased_a._confirmed_at
        while not service_b.running:
            await task.deferLater(reactor, 0.005)
        print(
            f"lease ttl {args.ttl}s: the other hub ran the collector {reactor.seconds() - last:.2f}s after the "
            f"holder's last renewal (bound: ttl + ttl/3 = {args.ttl * 4 / 3:.2f}s)"
        )
        await leased_b.stopService()
        leased_a.holding = False

        # fsync always (the tests' server) and every second (Redis's default
        # for the append-only file, and the pipeline benchmark's).
        for fsync in ("always", "everysec"):
            other = RedisServer(appendfsync=fsync).start()
            queue = RedisQueue(other.url, stream=f"{prefix}:posts", reactor=reactor)
            queue.startService()
            try:
                n = args.batches * args.size // 8
                started = time.perf_counter()
                for p in posts[:n]:
                    await queue.put(p)
                elapsed = time.perf_counter() - started
                print(f"one collector's puts on the Redis queue, each awaited, appendfsync {fsync}: "
                      f"{n / elapsed:,.0f} posts/s ({n} posts)")  # fmt: skip
            finally:
                await queue.stopService()
                other.close()
    finally:
        await a.stopService()
        await b.stopService()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--ttl", type=float, default=1.5)
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
