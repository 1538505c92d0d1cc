"""
From a firehose to a browser: how fast, and how late, posts reach a
logged-in WebSocket client.

Runs the test suite's fake Jetstream (the real wire format) in this
process, a real `twistd -n monitor` whose Bluesky collector subscribes to
it, and an Autobahn client on the hub's /ws logged in like a browser (a
session cookie from the login form, the site's own Origin), subscribed to
every post.  Emit times and arrival times are read from the same clock in
this process, so the latency is from the source's emit to the client:
Jetstream frame, collector, queue, matching, VADER, SQLite, live channel.

1. Paced: RATE posts per second for DURATION seconds; latency p50/p90/p99.
2. Flat out: FLOOD posts emitted as fast as the fake can write them; posts
   per second received and every post accounted for (received, reported
   lost by the hub, or missing).

    python bench/live.py [--rate 1000] [--duration 10] [--flood 40000]
                         [--profile-wait 0] [--authors 300] [--appview-delay 0]
                         [--json bench/out/live.json]

`--profile-wait` is the collector's `profile_wait`: 0, the default, sends
a post on at once and attaches its author's profile when it comes; 1 holds
a post up to a second for it.  `--authors` is how many authors the posts
cycle through (300: profiles come from the cache after the warm-up; 0: a
new author for every post, a cold cache), `--appview-delay` how long the
fake AppView takes to answer.  Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ws_load import Hub, run_reactor  # noqa: E402  (the hub process and its login)

from tests.fakes.jetstream import FakeJetstream  # noqa: E402

_SEQ = re.compile(rb'"text":"acme live (\d+) ')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def config(port: int, profile_wait: float) -> str:
    return f"""
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:0:interface=127.0.0.1"
[[sources]]
kind = "bluesky"
name = "bluesky"
url = "ws://127.0.0.1:{port}/subscribe"
appview_url = "http://127.0.0.1:{port}"
profile_wait = {profile_wait}
[[topics]]
name = "Acme"
terms = ["acme"]
"""


def run(args) -> dict:
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.task import LoopingCall, deferLater

    fake = FakeJetstream(reactor)
    fake.appview_delay = args.appview_delay
    port = reactor.listenTCP(0, fake.site(), interface="127.0.0.1").getHost().port
    hub = Hub(tempfile.mkdtemp(prefix="monitor-live-"), config=config(port, args.profile_wait))
    state: dict = {"emitted": {}, "received": {}, "lost": 0, "frames": 0, "rss": []}
    waiters: list = []

    class Client(WebSocketClientProtocol):
        def onOpen(self):
            self.sendMessage(json.dumps({"type": "subscribe", "kinds": ["post"]}).encode())

        def onMessage(self, payload, isBinary):
            now = time.perf_counter()
            state["frames"] += 1
            received = state["received"]
            for m in _SEQ.finditer(payload):
                received.setdefault(int(m.group(1)), now)
            if b'"type":"lost"' in payload:
                for env in json.loads(payload):
                    if env["type"] == "lost":
                        state["lost"] += env["data"]["count"]
            for want, d in list(waiters):
                if want():
                    waiters.remove((want, d))
                    d.callback(None)

    def until(predicate, timeout):
        d = Deferred()
        waiters.append((predicate, d))
        return d.addTimeout(timeout, reactor)

    seq = [0]

    def emit(n):
        emitted = state["emitted"]
        for _ in range(n):
            i = seq[0]
            seq[0] += 1
            # Authors repeat, as on the network, so profiles come from the
            # cache; or (--authors 0) every post has a new one.
            emitted[i] = time.perf_counter()
            author = i % args.authors if args.authors else i
            fake.post(f"did:plc:bench{author:08d}", f"3l{i:012x}", f"acme live {i} is down again, support please help")

    def sample():
        state["rss"].append(hub.ps.memory_info().rss)

    async def main():
        hub.start()
        cookie = hub.login()
        host = f"127.0.0.1:{hub.port}"
        factory = WebSocketClientFactory(
            f"ws://{host}/ws", origin=hub.base, headers={"Cookie": f"monitor_session={cookie}"}, reactor=reactor
        )
        factory.protocol = Client
        factory.setProtocolOptions(autoPingInterval=0, utf8validateIncoming=False)
        await TCP4ClientEndpoint(reactor, "127.0.0.1", hub.port).connect(factory)
        sampler = LoopingCall(sample)
        sampler.start(0.5)
        # Warm up: the collector connected, profiles cached, a post through.
        while not fake.clients:
            await deferLater(reactor, 0.1, lambda: None)
        emit(300)
        await until(lambda: len(state["received"]) >= 300, 60)
        state["emitted"].clear()
        state["received"].clear()

        # 1. paced
        per_tick = max(1, int(args.rate / 100))
        paced = LoopingCall(emit, per_tick)
        started = time.perf_counter()
        paced.start(per_tick / args.rate)
        await deferLater(reactor, args.duration, lambda: None)
        paced.stop()
        state["paced_seconds"] = time.perf_counter() - started
        sent = set(state["emitted"])
        try:
            await until(lambda: sent <= set(state["received"]), 30)
        except Exception:
            pass
        lat = [(state["received"][i] - state["emitted"][i]) * 1000 for i in sent if i in state["received"]]
        state["paced"] = {
            "posts_emitted": len(sent),
            "posts_received": len(lat),
            "rate_per_second": round(len(sent) / state["paced_seconds"], 1),
            "latency_ms": {
                "p50": round(percentile(lat, 0.5), 2),
                "p90": round(percentile(lat, 0.9), 2),
                "p99": round(percentile(lat, 0.99), 2),
                "max": round(max(lat), 2),
            },
            "frames": state["frames"],
        }

        # 2. flat out
        state["emitted"].clear()
        state["received"].clear()
        state["lost"] = 0
        state["frames"] = 0
        first = seq[0]
        started = time.perf_counter()
        chunk = 500
        while seq[0] - first < args.flood:
            emit(min(chunk, args.flood - (seq[0] - first)))
            await deferLater(reactor, 0, lambda: None)
        emitted_in = time.perf_counter() - started
        try:
            await until(lambda: len(state["received"]) + state["lost"] >= args.flood, 120)
        except Exception:
            pass
        last = max(state["received"].values()) if state["received"] else started
        received = len(state["received"])
        state["flood"] = {
            "posts_emitted": args.flood,
            "emit_seconds": round(emitted_in, 2),
            "posts_received": received,
            "posts_reported_lost": state["lost"],
            "posts_missing": args.flood - received - state["lost"],
            "received_per_second": round(received / (last - started), 1),
            "frames": state["frames"],
        }
        sampler.stop()
        text = __import__("urllib.request").request.urlopen(hub.base + "/metrics", timeout=30).read().decode()
        stored = sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("monitor_posts_stored_total{")
        )
        state["stored"] = stored
        reactor.stop()

    run_reactor(main)
    hub.stop()
    return {
        "profile_wait": args.profile_wait,
        "authors": args.authors,
        "appview_delay": args.appview_delay,
        "appview_calls": len(fake.appview_requests),
        "paced": state.get("paced"),
        "flood": state.get("flood"),
        "posts_stored_total": state.get("stored"),
        "hub_peak_rss_mib": round(max(state["rss"] or [0]) / 2**20, 1),
        "cpu": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="posts per second in the paced run")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the paced run")
    parser.add_argument("--flood", type=int, default=40000, help="posts in the flat-out run")
    parser.add_argument("--profile-wait", type=float, default=0.0, help="the collector's profile_wait")
    parser.add_argument("--authors", type=int, default=300, help="authors the posts cycle through; 0: all new")
    parser.add_argument("--appview-delay", type=float, default=0.0, help="seconds the fake AppView takes")
    parser.add_argument("--json", default=str(ROOT / "bench" / "out" / "live.json"))
    args = parser.parse_args()
    result = run(args)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"(written to {args.json})")


if __name__ == "__main__":
    main()
