"""
End-to-end throughput of the hub on its embedded default.

Writes N real-looking posts (the labelled tweets of ../shared/data, each
naming one of three brands, plus demo posts) to a replay file, starts a real
`twistd -n monitor` on it, waits until the API reports every post stored, and
reads per-post timings from the store.  In the same run it measures raw
vaderSentiment on the same texts on one core, and prints both with their ratio,
and the hub's own scorer (FastVader) on the same texts.  CPU per post (the
hub and its workers, from the moment it answers) is steadier than posts/s on a
shared machine.

    python bench/pipeline.py [--posts 50000] [--batch-size 500] [--json out.json] [--hub-root DIR]
                             [--store sqlite|postgresql|both] [--dsn DSN] [--stories on|off]
                             [--poll-stats SECONDS] [--queue memory|redis] [--hubs N] [--redis-url URL]
                             [--cluster]

With --poll-stats, a dashboard's worth of readers asks /api/v1/stats for
the last 24 hours every SECONDS during the run (the dashboard asks the same
of the store twice per refresh), and its answer times are reported.

With --store postgresql the hub keeps its posts in PostgreSQL (--dsn, an
empty database; without it, a throwaway server from tests/servers.py);
--store both runs SQLite and then PostgreSQL on the same posts.

With --queue redis the posts go through a Redis stream (--redis-url; without
it, a throwaway redis-server from tests/servers.py, append-only with fsync
every second, Redis's own default for it), and --hubs N runs N hubs on it,
one cluster: one collects, all analyse and store.  --cluster runs, on the
same posts in one run, SQLite + memory queue (one hub), then PostgreSQL +
Redis with one hub, then with two.  CPU per post is then the hubs' (all of
them, with their workers) and, apart, the servers' (PostgreSQL's backends
and redis-server, when they are the throwaway ones).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.analysis.text import plain_text  # noqa: E402
from monitor.collect.demo_content import DemoContent, brand_terms  # noqa: E402
from monitor.collect.jsonl import format_post  # noqa: E402

BRANDS = ["Acme", "Globex", "Initech"]
TOKEN = "bench-token"


def texts(n: int) -> list[str]:
    shared = pathlib.Path(os.environ.get("MONITOR_SHARED", ROOT.parent / "shared"))
    rows = (shared / "data/vader_icwsm2014/tweets_GroundTruth.txt").read_text(encoding="utf-8").splitlines()
    real = [r.split("\t", 2)[2] for r in rows]
    rng = random.Random(7)
    demo = DemoContent(BRANDS, rng)
    out = []
    for i in range(n):
        if i % 3:
            out.append(f"{rng.choice(BRANDS)} {real[i % len(real)]}")
        else:
            out.append(demo.make_post(1.7e9 + i, "bench").text)
    return out


def write_replay(path: pathlib.Path, bodies: list[str], rate: float) -> None:
    """
    One post every 1/rate seconds of created_at (a paced replay keeps that
    spacing; a flat-out one ignores it).
    """
    from monitor.model import Post

    with open(path, "wb") as f:
        for i, text in enumerate(bodies):
            p = Post(
                source="bench",
                network="bench",
                native_id=str(i),
                text=text,
                author=f"user{i % 997}",
                created_at=1.7e9 + i / rate,
                author_followers=(i * 7919) % 100000,
                likes=i % 13,
            )
            f.write(format_post(p))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accounted(ports: list[int], n: int):
    """
    (stored, unmatched) once all n posts are collected and every one of them
    is stored or dropped as unmatched, summed over the hubs; None before.
    """
    values = {}
    for port in ports:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
        with urllib.request.urlopen(req, timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            for name in ("collected", "stored", "unmatched"):
                if line.startswith(f'monitor_posts_{name}_total{{source="bench"}}'):
                    values[name] = values.get(name, 0) + int(float(line.split()[-1]))
    stored, unmatched = values.get("stored", 0), values.get("unmatched", 0)
    if values.get("collected") == n and stored + unmatched == n:
        return stored, unmatched
    return None


def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raw_vader(bodies: list[str]) -> float:
    """Posts per second of vaderSentiment alone on one core, on the plain texts."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return _per_second(SentimentIntensityAnalyzer().polarity_scores, bodies)


def fast_vader(bodies: list[str]) -> float:
    """Posts per second of the hub's scorer (FastVader, its cache on) on the same texts."""
    from monitor.analysis.vader import FastVader

    return _per_second(FastVader().polarity_scores, bodies)


def _per_second(score, bodies: list[str]) -> float:
    plain = [plain_text(t) for t in bodies]
    started = time.perf_counter()
    for t in plain:
        score(t)
    return len(plain) / (time.perf_counter() - started)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants (workers)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def reactor_cpu_seconds(pids: list[int]) -> float:
    """
    User + system CPU of these processes' main threads: the reactor's, apart
    from the store's writer thread, the analysis threads and the workers.
    """
    import psutil

    total = 0.0
    for pid in pids:
        try:
            for t in psutil.Process(pid).threads():
                if t.id == pid:
                    total += t.user_time + t.system_time
        except psutil.NoSuchProcess:
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def posts_in(dsn: str) -> list[tuple]:
    import psycopg2

    db = psycopg2.connect(dsn)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT to_regclass('posts') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return []
            cursor.execute("SELECT received_at, stored_at FROM posts")
            return cursor.fetchall()
    finally:
        db.close()


def poll_stats(port: int, every: float, stop, times: list) -> None:
    """
    Until C{stop} is set: ask for 24 hours' stats every C{every} seconds,
    as a dashboard left open does, recording each answer's time.  The day
    is the replay's own (its posts are written from 1.7e9 on), its edges
    inside minutes.
    """
    while not stop.wait(every):
        since = 1.7e9 + 0.5
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/stats?since={since}&until={since + 86400}&bucket=1800&top=100",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
        except OSError:
            continue
        times.append(time.perf_counter() - started)


def hub_config(port: int, batch_size: int, rate: float, workers: int, dsn: str, stories: str, redis: str,
               name: str, prefix: str, replay: pathlib.Path) -> str:  # fmt: skip
    """One hub's configuration; with C{redis}, one of the cluster C{prefix}."""
    cluster = (
        f'[hub]\nname = "{name}"\ncluster = "{prefix}"\n[queue]\nkind = "redis"\nurl = "${{MONITOR_REDIS_URL}}"\n'
        if redis
        else "[queue]\nsize = 10000\n"
    )
    return f"""
[store]
path = "bench.sqlite"
{f'kind = "postgresql"{chr(10)}dsn = "${{MONITOR_DSN}}"' if dsn else ""}
{cluster}
[analysis]
batch_size = {batch_size}
{f"workers = {workers}" if workers else ""}
{f"[stories]{chr(10)}enabled = {'true' if stories == 'on' else 'false'}" if stories else ""}
[web]
endpoint = "tcp:{port}:interface=127.0.0.1"
[[sources]]
kind = "replay"
name = "bench"
path = "{replay}"
follow = true
speed = {1 if rate else 0}
""" + "".join(
        f'[[topics]]\nname = "{b}"\nterms = {json.dumps(list(brand_terms(b)))}\ngroup = "vendors"\n' for b in BRANDS
    )


def run(
    n: int,
    batch_size: int,
    rate: float = 0.0,
    workers: int = 0,
    hub_root: pathlib.Path = ROOT,
    dsn: str = "",
    stories: str = "",
    poll: float = 0.0,
    redis: str = "",
    hubs: int = 1,
    server_pids: tuple = (),
) -> dict:
    """
    Replay n posts into fresh hubs (one, or C{hubs} on the Redis C{redis}):
    flat out (rate 0) or paced at rate posts per second.  The hubs run the
    code in hub_root (another checkout, to compare with an older commit);
    the in-process figures use this one.  C{server_pids}: the servers'
    processes, whose CPU is reported apart.
    """
    import threading
    import uuid

    # What the other users of the machine put on it, before our hubs start.
    load = os.getloadavg()
    bodies = texts(n)
    if dsn and posts_in(dsn):
        raise SystemExit("--dsn: the database already holds posts; give an empty one")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # Written when every hub is up, so that what they spend on the posts
        # is counted from before the first one (the replay follows it).
        replay = tmp / "posts.jsonl"
        replay.touch()
        write_replay(tmp / "posts.new", bodies, rate or 1.0)
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ, PYTHONPATH=str(hub_root), MONITOR_API_TOKEN=TOKEN, MONITOR_DSN=dsn,
                   MONITOR_REDIS_URL=redis)  # fmt: skip
        ports, procs = [], []
        for i in range(hubs):
            directory = tmp / f"hub-{i}"
            directory.mkdir()
            port = free_port()
            ports.append(port)
            config = hub_config(port, batch_size, rate, workers, dsn, stories, redis, f"bench-{i}", prefix, replay)
            (directory / "bench.toml").write_text(config)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from twisted.scripts.twistd import run; run()",
                        "--nodaemon",
                        "--pidfile=",
                        "--logfile",
                        str(directory / "twistd.log"),
                        "monitor",
                        "--config",
                        str(directory / "bench.toml"),
                    ],
                    cwd=directory,
                    env=env,
                )  # fmt: skip
            )
        pids = [p.pid for p in procs]

        stop, polls = threading.Event(), []
        if poll:
            threading.Thread(target=poll_stats, args=(ports[0], poll, stop, polls), daemon=True).start()
        try:
            deadline = time.monotonic() + 600
            settled = None
            cpu_started = server_started = reactor_started = None
            up = set()
            while time.monotonic() < deadline and settled is None:
                time.sleep(0.25)
                try:
                    for port in ports:
                        if port not in up:
                            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                            up.add(port)
                    settled = accounted(ports, n)
                except OSError:
                    continue
                if cpu_started is None:  # every hub is up: start-up CPU is behind us
                    cpu_started = cpu_seconds(pids)
                    reactor_started = reactor_cpu_seconds(pids)
                    server_started = cpu_seconds(list(server_pids))
                    os.replace(tmp / "posts.new", replay)
            stored, unmatched = settled or (0, 0)
            cpu = cpu_seconds(pids) - (cpu_started or 0.0)
            reactor_cpu = reactor_cpu_seconds(pids) - (reactor_started or 0.0)
            server_cpu = cpu_seconds(list(server_pids)) - (server_started or 0.0)
            rss = max(peak_rss_mib(pid) for pid in pids)
        finally:
            stop.set()
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
        if stored + unmatched < n:
            raise SystemExit(f"only {stored} + {unmatched} unmatched of {n} posts; see {tmp}/hub-*/twistd.log")
        if dsn:
            rows = posts_in(dsn)
        else:
            db = sqlite3.connect(tmp / "hub-0" / "bench.sqlite")
            rows = db.execute("SELECT received_at, stored_at FROM posts").fetchall()
    first = min(r[0] for r in rows)
    last = max(r[1] for r in rows)
    latencies = [r[1] - r[0] for r in rows]
    pipeline = len(rows) / (last - first)
    vader = raw_vader(bodies)
    fast = fast_vader(bodies)
    return {
        "store": "postgresql" if dsn else "sqlite",
        "queue": "redis" if redis else "memory",
        "hubs": hubs,
        "posts": n,
        "offered_rate": rate or "flat out",
        "analysis_workers": workers,
        "stored": len(rows),
        "unmatched": unmatched,
        "batch_size": batch_size,
        "pipeline_posts_per_s": round(pipeline),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "peak_rss_mib": round(rss, 1),
        "hub_cpu_us_per_post": round(cpu / n * 1e6, 1),
        "reactor_cpu_us_per_post": round(reactor_cpu / n * 1e6, 1),
        "server_cpu_us_per_post": round(server_cpu / n * 1e6, 1) if server_pids else None,
        "raw_vader_posts_per_s": round(vader),
        "ratio": round(pipeline / vader, 2),
        "fast_vader_posts_per_s": round(fast),
        "fast_vader_ratio_to_raw": round(fast / vader, 2),
        "stats_polls": len(polls),
        "stats_p50_ms": round(percentile(polls, 0.5) * 1000, 1) if polls else None,
        "stats_p99_ms": round(percentile(polls, 0.99) * 1000, 1) if polls else None,
        "load_average_before": " ".join(f"{x:.2f}" for x in load),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=50000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.0, help="pace the replay at this many posts/s (0: flat out)")
    parser.add_argument("--workers", type=int, default=0, help="[analysis] workers: 0 threads, N processes")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--stories", choices=("on", "off"), help="[stories] enabled (default: the hub's default)")
    parser.add_argument(
        "--hub-root",
        type=pathlib.Path,
        default=ROOT,
        help="run the hub from this source tree (e.g. an older commit, git archive'd)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql", "both"),
        default="sqlite",
        help="where the hub keeps posts; both: SQLite, then PostgreSQL, same posts",
    )
    parser.add_argument(
        "--poll-stats",
        type=float,
        default=0.0,
        help="ask /api/v1/stats for the last 24 h every this many seconds during the run",
    )
    parser.add_argument("--dsn", default="", help="postgresql: an empty database (default: a throwaway server)")
    parser.add_argument("--queue", choices=("memory", "redis"), default="memory", help="between collector and analysis")
    parser.add_argument("--hubs", type=int, default=1, help="with --queue redis: this many hubs, one cluster")
    parser.add_argument("--redis-url", default="", help="redis: this Redis (default: a throwaway server)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="on the same posts: SQLite + memory, then PostgreSQL + Redis with one hub, then with two",
    )
    args = parser.parse_args()
    if args.hubs > 1 and args.queue != "redis" and not args.cluster:
        parser.error("--hubs: several hubs need --queue redis")
    if args.cluster and (args.dsn or args.redis_url):
        parser.error("--cluster starts its own servers (a fresh database per setup): no --dsn or --redis-url")
    if args.cluster:
        setups = [("sqlite", "memory", 1), ("postgresql", "redis", 1), ("postgresql", "redis", 2)]
    else:
        stores = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
        setups = [(store, args.queue, args.hubs) for store in stores]
    servers = {}
    results = []
    try:
        for store, queue, hubs in setups:
            dsn = redis = ""
            pids = []
            if store == "postgresql":
                dsn = args.dsn
                if not dsn:
                    from tests.servers import PostgresServer

                    if "postgres" not in servers:
                        servers["postgres"] = PostgresServer().start()
                    dsn = servers["postgres"].dsn(servers["postgres"].create_database())
                    pids.append(servers["postgres"].proc.pid)
            if queue == "redis":
                redis = args.redis_url
                if not redis:
                    from tests.servers import RedisServer

                    # A new server per setup: an empty stream, an empty file.
                    if "redis" in servers:
                        servers.pop("redis").close()
                    servers["redis"] = RedisServer(appendfsync="everysec").start()
                    redis = servers["redis"].url
                    pids.append(servers["redis"].proc.pid)
            results.append(
                run(
                    args.posts,
                    args.batch_size,
                    args.rate,
                    args.workers,
                    args.hub_root.resolve(),
                    dsn,
                    args.stories,
                    args.poll_stats,
                    redis,
                    hubs,
                    tuple(pids),
                )
            )
    finally:
        for server in servers.values():
            server.close()
    for result in results:
        for k, v in result.items():
            print(f"{k:24} {v}")
        print()
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            name = f"{r['store']}+{r['queue']} x{r['hubs']}"
            print(
                f"{name:24} {r['pipeline_posts_per_s'] / base['pipeline_posts_per_s']:.2f}x the posts/s, "
                f"{r['hub_cpu_us_per_post'] / base['hub_cpu_us_per_post']:.2f}x the hub CPU per post "
                f"of {base['store']}+{base['queue']} x{base['hubs']}"
            )
    if args.json:
        out = results[0] if len(results) == 1 else results
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
