"""
Throughput of the hub with 0, 1 and 2 analysis nodes, and the hub's own
cost per post it dispatches.

For each node count it starts a real `twistd -n monitor` with a [nodes]
listener and that many `twistd -n monitor-node --workers 1` processes on
this machine, waits until they are registered, replays the same N posts
(the corpus of bench/pipeline.py) flat out, and reads per-post timings from
the store and CPU times from /proc.  It also measures raw vaderSentiment on
one core, and the dispatch path alone: a process plays the hub's node
pool and sends the posts straight to one node, first a node whose analyzer
answers with canned rows (so that process's CPU time per post is what the
hub pays per dispatched post: cutting, encoding, AMP framing, decoding,
building the results), then a real `monitor-node --workers 1` (what one
node delivers when the hub's store is not the limit).

    python bench/nodes.py [--posts 20000] [--nodes 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline import BRANDS, cpu_seconds, raw_vader, texts  # noqa: E402

from monitor.collect.demo_content import brand_terms  # noqa: E402
from monitor.collect.jsonl import format_post  # noqa: E402

TOKEN = "bench-token"
SECRET = "bench-node-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistd(tmp: pathlib.Path, log: str, args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "--nodaemon",
            "--pidfile=",
            "--logfile",
            str(tmp / log),
            *args,
        ],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def get(port: int, path: str):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read().decode()
    return body if path == "/metrics" else json.loads(body)


def settled(port: int, n: int) -> bool:
    stored = unmatched = collected = 0
    for line in get(port, "/metrics").splitlines():
        if line.startswith('monitor_posts_stored_total{source="bench"}'):
            stored = float(line.split()[-1])
        elif line.startswith('monitor_posts_unmatched_total{source="bench"}'):
            unmatched = float(line.split()[-1])
        elif line.startswith('monitor_posts_collected_total{source="bench"}'):
            collected = float(line.split()[-1])
    return collected == n and stored + unmatched == n


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def replay(n_nodes: int, bodies: list[str], batch_size: int) -> dict:
    """One replay of bodies through a fresh hub with n_nodes single-worker nodes."""
    from monitor.model import Post

    n = len(bodies)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        with open(tmp / "posts.new", "wb") as f:
            for i, text in enumerate(bodies):
                f.write(
                    format_post(
                        Post(
                            source="bench",
                            network="bench",
                            native_id=str(i),
                            text=text,
                            author=f"user{i % 997}",
                            created_at=1.7e9 + i,
                        )
                    )
                )
        secret = tmp / "secret"
        secret.write_text(SECRET)
        os.chmod(secret, 0o600)
        port, node_port = free_port(), free_port()
        (tmp / "bench.toml").write_text(
            f"""
[store]
path = "bench.sqlite"
[analysis]
batch_size = {batch_size}
[web]
endpoint = "tcp:{port}:interface=127.0.0.1"
[nodes]
endpoint = "tcp:{node_port}:interface=127.0.0.1"
secret_file = "{secret}"
[[sources]]
kind = "replay"
name = "bench"
path = "posts.jsonl"
follow = true
"""
            + "".join(f'[[topics]]\nname = "{b}"\nterms = {json.dumps(list(brand_terms(b)))}\n' for b in BRANDS)
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_API_TOKEN=TOKEN)
        env.pop("MONITOR_NODE_SECRET", None)
        hub = twistd(tmp, "hub.log", ["monitor", "--config", "bench.toml"], env)
        nodes = [
            twistd(
                tmp,
                f"node{i}.log",
                [
                    "monitor-node",
                    "--hub",
                    f"tcp:127.0.0.1:{node_port}",
                    "--secret-file",
                    str(secret),
                    "--workers",
                    "1",
                    "--name",
                    f"node{i}",
                ],
                env,
            )
            for i in range(n_nodes)
        ]
        try:
            wait_for(
                lambda: len([x for x in get(port, "/api/v1/nodes")["nodes"] if x["state"] == "connected"]) == n_nodes,
                60,
                "the nodes to register",
            )
            time.sleep(1.0)  # let the nodes' workers finish starting
            hub_cpu, node_cpu = cpu_seconds([hub.pid]), cpu_seconds([p.pid for p in nodes])
            os.rename(tmp / "posts.new", tmp / "posts.jsonl")
            wait_for(lambda: settled(port, n), 600, "every post to be stored")
            hub_cpu = cpu_seconds([hub.pid]) - hub_cpu
            node_cpu = cpu_seconds([p.pid for p in nodes]) - node_cpu
            status = get(port, "/api/v1/nodes")["nodes"]
            local = 0.0
            for line in get(port, "/metrics").splitlines():
                if line.startswith("monitor_posts_analysed_locally_total"):
                    local = float(line.split()[-1])
        finally:
            for p in [*nodes, hub]:
                p.send_signal(signal.SIGTERM)
            for p in [*nodes, hub]:
                p.wait(30)
        db = sqlite3.connect(tmp / "bench.sqlite")
        first, last, stored = db.execute("SELECT min(received_at), max(stored_at), count(*) FROM posts").fetchone()
        db.close()
    return {
        "nodes": n_nodes,
        "stored": stored,
        "posts_per_s": round(stored / (last - first)),
        "hub_cpu_us_per_post": round(hub_cpu / n * 1e6, 1),
        "nodes_cpu_us_per_post": round(node_cpu / n * 1e6, 1),
        "analysed_on_nodes": sum(s["posts_done"] for s in status),
        "analysed_on_hub": int(local),
    }


# --- the dispatch path alone ----------------------------------------------------

#: What a canned node answers for every text: a typical row.
CANNED_ROW = [-0.6249, 0.0, 0.577, 0.423, "negative", ["complaint", "question"]]


class Canned:
    """A node analyzer that answers at once with canned rows (no scoring)."""

    def __init__(self, classifier, workers, reactor):
        self.running = False

    def setServiceParent(self, parent):
        pass

    def score(self, texts):
        from twisted.internet.defer import succeed

        return succeed([CANNED_ROW] * len(texts))


def canned_node(port: int) -> None:
    """Run a node whose analyzer answers with canned rows (for the dispatch measurement)."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import clientFromString

    from monitor.nodes.node import AnalysisNode

    node = AnalysisNode(
        clientFromString(reactor, f"tcp:127.0.0.1:{port}"),
        SECRET.encode(),
        4,
        name="canned",
        reactor=reactor,
        analyzer_factory=Canned,
    )
    node.startService()
    reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
    reactor.run()


def direct(bodies: list[str], batch_size: int, canned: bool) -> dict:
    """
    This process plays the hub's node pool and sends bodies straight to one
    node (no collector, matcher or store), two batches in flight like the
    pipeline.  With a canned node (answers without scoring) this measures
    the hub's own cost per dispatched post; with a real
    `twistd monitor-node --workers 1` it measures what one node delivers.
    """
    from twisted.internet import defer, reactor
    from twisted.internet.task import deferLater

    from monitor.analysis import Classifier
    from monitor.metrics import Metrics
    from monitor.model import Post
    from monitor.nodes.pool import NodePool

    posts = [
        Post(source="b", network="b", native_id=str(i), text=t, author="a", created_at=0.0)
        for i, t in enumerate(bodies)
    ]
    port = free_port()
    pool = NodePool(
        [], Classifier(), Metrics(), endpoint=f"tcp:{port}:interface=127.0.0.1", secret=SECRET.encode(), reactor=reactor
    )
    result = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_NODE_SECRET=SECRET)
    if canned:
        command = [sys.executable, __file__, "--canned-node", str(port)]
    else:
        command = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "--nodaemon",
            "--pidfile=",
            "--logfile",
            os.devnull,
            "monitor-node",
            "--hub",
            f"tcp:127.0.0.1:{port}",
            "--workers",
            "1",
        ]

    async def main():
        await pool.startService()
        node = subprocess.Popen(command, env=env)
        try:
            for _ in range(600):
                if pool.status():
                    break
                await deferLater(reactor, 0.05, lambda: None)
            await pool.analyze(posts[:2000])  # warm up
            proc = psutil.Process(node.pid)
            workers = proc.children(recursive=True)
            main0, workers0 = cpu_seconds_of([proc]), cpu_seconds_of(workers)
            cpu, wall = time.process_time(), time.perf_counter()
            sem = defer.DeferredSemaphore(2)
            await defer.gatherResults(
                [sem.run(pool.analyze, posts[i : i + batch_size]) for i in range(0, len(posts), batch_size)]
            )
            n = len(posts)
            result["hub_cpu_us_per_post"] = round((time.process_time() - cpu) / n * 1e6, 2)
            result["posts_per_s"] = round(n / (time.perf_counter() - wall))
            result["node_main_cpu_us_per_post"] = round((cpu_seconds_of([proc]) - main0) / n * 1e6, 1)
            result["node_workers_cpu_us_per_post"] = round((cpu_seconds_of(workers) - workers0) / n * 1e6, 1)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
            await pool.stopService()

    def run():
        d = defer.ensureDeferred(main())
        d.addErrback(lambda f: result.setdefault("error", f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in result:
        raise SystemExit(result["error"])
    return result


def cpu_seconds_of(processes: list) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def in_child(n: int, batch_size: int, kind: str) -> dict:
    """
    One direct measurement in a child process: a reactor runs only once per
    process.
    """
    out = subprocess.run(
        [sys.executable, __file__, "--direct", kind, str(n), str(batch_size)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--canned-node", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--direct", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canned_node:
        canned_node(args.canned_node)
        return
    if args.direct:
        kind, n, batch_size = args.direct
        print(json.dumps(direct(texts(int(n)), int(batch_size), canned=kind == "canned")))
        return
    bodies = texts(args.posts)
    vader = raw_vader(bodies)
    out = {
        "posts": args.posts,
        "raw_vader_posts_per_s": round(vader),
        "raw_vader_us_per_post": round(1e6 / vader, 1),
        "runs": [],
    }
    print(f"raw VADER, one core: {out['raw_vader_posts_per_s']} posts/s ({out['raw_vader_us_per_post']} us/post)")
    for n in args.nodes:
        r = replay(n, bodies, args.batch_size)
        r["ratio_to_raw_vader"] = round(r["posts_per_s"] / vader, 2)
        out["runs"].append(r)
        print(json.dumps(r))
    canned = in_child(args.posts, args.batch_size, "canned")
    out["hub_dispatch_cpu_us_per_post"] = canned["hub_cpu_us_per_post"]
    out["dispatch_share_of_raw_vader"] = round(canned["hub_cpu_us_per_post"] / out["raw_vader_us_per_post"], 3)
    print(
        f"hub's cost per dispatched post: {canned['hub_cpu_us_per_post']} us CPU "
        f"({out['dispatch_share_of_raw_vader'] * 100:.1f}% of raw VADER per post)"
    )
    out["one_node_direct"] = alone = in_child(args.posts, args.batch_size, "real")
    print(
        f"one node (1 worker) fed directly: {alone['posts_per_s']} posts/s; hub "
        f"{alone['hub_cpu_us_per_post']} us, node main {alone['node_main_cpu_us_per_post']} us, node worker "
        f"{alone['node_workers_cpu_us_per_post']} us CPU per post"
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
